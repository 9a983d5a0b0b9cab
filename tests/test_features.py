"""Features, frame targets, the parameter-checked cache, and bad input (no fluidsynth:
sines and hand-written MIDI)."""

import librosa
import numpy as np
import pandas as pd
import pretty_midi
import pytest
import soundfile

from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.signal.feature_cache import load_track, read_index
from lowrank_amt.signal.spectrogram import bin_frequencies, compute_features, log_filterbank
from lowrank_amt.evaluation.notes import extend_with_pedal, pedal_intervals
from lowrank_amt.signal.targets import frame_targets
from lowrank_amt.stages.features import extract_dataset
from lowrank_amt.runtime.io import read_json, write_json

SR = 16000
CQT = {"kind": "cqt", "hop_length": 256, "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}


def sine(freq, seconds, rate=SR, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_midi(path, notes, pedal=()):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes = [pretty_midi.Note(80, p, s, e) for s, e, p in notes]
    piano.control_changes = [pretty_midi.ControlChange(64, v, t) for t, v in pedal]
    midi.instruments.append(piano)
    midi.write(str(path))


def write_manifest(folder, rows):
    lines = ["track_id,split,audio_path,midi_path,duration,instrument"]
    lines += [f"{t},{s},{t}.wav,{t}.mid,1.0,sine" for t, s in rows]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


@pytest.mark.parametrize("kind", ["cqt", "logstft", "stft"])
def test_a_sine_peaks_at_its_bin(kind):
    spec = {**CQT, "kind": kind, "n_fft": 2048}
    features = compute_features(sine(440.0, 1.0).astype(np.float32), spec, SR)
    freqs = bin_frequencies(spec, SR)
    assert features.shape == (len(freqs), 1 + SR // 256) and features.dtype == np.float32
    peak = freqs[np.argmax(features[:, features.shape[1] // 2])]
    assert peak == pytest.approx(440.0, rel=0.01 if kind != "stft" else SR / 2048 / 440)
    if kind != "stft":
        assert np.argmax(features[:, 30]) == 3 * (69 - 21)


#: How far the CQT may be from librosa's, over the largest magnitude: float32 rounding of
#: sums taken in another order (measured: below 1.1e-6 on these cases).
CQT_TOLERANCE = 1e-5


@pytest.mark.filterwarnings("ignore:n_fft=.*too large")
@pytest.mark.parametrize("hop, per_semitone, fmin_midi, semitones, rate", [
    (256, 3, 21, 88, SR),      # 8 octaves, hop 256
    (512, 3, 21, 88, 22050),   # the study's default
    (512, 1, 40, 48, 22050),   # early downsampling
    (512, 2, 33, 30, 22050),   # part of an octave
])
@pytest.mark.parametrize("seconds", [0.005, 0.7])  # shorter than any filter; long
def test_cqt_equals_librosa(hop, per_semitone, fmin_midi, semitones, rate, seconds):
    """Our CQT against librosa.cqt, which every model's features came from; a second call
    reuses the filters and gives the same values."""
    spec = {"kind": "cqt", "hop_length": hop, "bins_per_semitone": per_semitone, "fmin_midi": fmin_midi,
            "n_semitones": semitones}
    audio = (sine(330.0, seconds, rate) + sine(1000.0, seconds, rate)).astype(np.float32)
    audio += np.random.default_rng(0).normal(0, 0.01, len(audio)).astype(np.float32)
    ours = [compute_features(audio, spec, rate) for _ in range(2)]
    reference = np.abs(librosa.cqt(audio, sr=rate, hop_length=hop, fmin=librosa.midi_to_hz(fmin_midi),
                                   n_bins=semitones * per_semitone, bins_per_octave=12 * per_semitone))
    assert ours[0].shape == reference.shape and np.array_equal(ours[0], ours[1])
    assert np.abs(ours[0] - reference).max() <= CQT_TOLERANCE * reference.max()
    # fmin comes from Python's pow here and numpy's there (SIMD on some CPUs): a few ulps apart at most
    np.testing.assert_allclose(bin_frequencies(spec), librosa.cqt_frequencies(
        n_bins=semitones * per_semitone, fmin=librosa.midi_to_hz(fmin_midi), bins_per_octave=12 * per_semitone),
        rtol=1e-12, atol=0)


def test_log_filterbank_rows_are_weighted_means():
    bank = log_filterbank({**CQT, "n_fft": 2048}, SR)
    assert bank.shape == (264, 1025)
    assert np.allclose(bank.sum(axis=1), 1.0) and (bank >= 0).all()
    # a high bin (wider than an STFT bin) averages several STFT bins
    assert (bank[-1] > 0).sum() >= 3


def test_targets_mark_first_and_last_frames_and_match_the_roll():
    intervals = np.array([[0.0, 0.5], [0.25, 0.26], [0.6, 1.0], [0.1, 0.3]])
    pitches = np.array([60, 60, 60, 120])
    targets = frame_targets(intervals, pitches, 12, 10.0)
    key = 60 - 21
    assert np.flatnonzero(targets["roll"].any(axis=1)).tolist() == [key]  # MIDI 120 is off the keyboard
    assert np.flatnonzero(targets["roll"][key]).tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert np.flatnonzero(targets["onsets"][key]).tolist() == [0, 3, 6]
    assert np.flatnonzero(targets["offsets"][key]).tolist() == [3, 4, 9]
    assert targets["onsets"].sum() == 3  # the note beyond the piano range is ignored


def test_pedal_extends_released_notes_until_pedal_up_or_the_next_strike(tmp_path):
    write_midi(tmp_path / "p.mid", [(0, 1, 60)], pedal=[(0.3, 100), (1.0, 0), (1.5, 127), (2.0, 30)])
    pedal = pedal_intervals(tmp_path / "p.mid")
    assert pedal.tolist() == [[0.3, 1.0], [1.5, 2.0]]
    intervals = np.array([[0.0, 0.5], [0.8, 0.9], [0.1, 0.2], [1.2, 1.4], [1.6, 1.7]])
    pitches = np.array([60, 60, 62, 64, 64])
    extended = extend_with_pedal(intervals, pitches, pedal)
    assert extended.tolist() == [[0.0, 0.8], [0.8, 1.0], [0.1, 0.2], [1.2, 1.4], [1.6, 2.0]]


@pytest.fixture
def dataset(tmp_path):
    soundfile.write(tmp_path / "a.wav", sine(440.0, 2.0), SR)
    write_midi(tmp_path / "a.mid", [(0.0, 1.0, 69), (1.0, 1.2, 69)], pedal=[(0.5, 127), (1.5, 0)])
    soundfile.write(tmp_path / "b.wav", sine(220.0, 1.0, 48000, channels=2), 48000)
    write_midi(tmp_path / "b.mid", [(0.0, 0.9, 57)])
    return write_manifest(tmp_path, [("a", "train"), ("b", "test")])


def test_extract_dataset_writes_a_checked_memory_mappable_cache(tmp_path, dataset):
    messages = []
    spec = {**CQT, "dtype": "float16", "pedal_extension": True}
    extract_dataset(dataset, spec, SR, tmp_path / "f" / "index.csv", log=messages.append)
    index = read_index(tmp_path / "f" / "index.csv", spec=spec, sample_rate=SR)
    assert list(index["track_id"]) == ["a", "b"]
    a, b = index.itertuples()
    features, roll = load_track(a)
    assert isinstance(features, np.memmap) and features.dtype == np.float16 and features.shape == (264, a.n_frames)
    assert a.n_frames == 1 + 2 * SR // 256 and a.frame_rate == SR / 256
    targets = {name: np.load(getattr(a, f"{name}_path")) for name in ("roll", "onsets", "offsets")}
    assert np.array_equal(targets["roll"], roll)
    # pedal down 0.5-1.5 s: the first note still ends at the re-strike, the second at pedal up
    assert np.flatnonzero(targets["onsets"][69 - 21]).tolist() == [0, 63]
    assert np.flatnonzero(targets["offsets"][69 - 21]).tolist() == [62, 93]
    # the stereo 48 kHz file was downmixed and resampled, and the log says so
    assert b.n_frames == 1 + SR // 256 and b.duration == pytest.approx(1.0, abs=1e-3)
    assert np.argmax(load_track(b)[0][:, 30]) == 3 * (57 - 21)
    assert any("b.wav" in m and "2 channels" in m for m in messages)
    assert any("b.wav" in m and "48000 Hz" in m for m in messages)
    params = read_json(tmp_path / "f" / "params.json")
    assert params["sample_rate"] == SR and params["hop_length"] == 256 and params["dtype"] == "float16"
    assert index["annotated"].tolist() == [True, True]


def test_a_training_recording_without_midi_has_silent_targets_and_is_marked(tmp_path, dataset):
    manifest = pd.read_csv(dataset)
    manifest.loc[manifest["track_id"] == "a", "midi_path"] = ""
    manifest.to_csv(dataset, index=False)
    extract_dataset(dataset, CQT, SR, tmp_path / "f" / "index.csv", log=lambda m: None)
    index = read_index(tmp_path / "f" / "index.csv")
    a = index.iloc[0]
    assert not a["annotated"] and index["annotated"].iloc[1]
    assert a["n_frames"] > 0 and not np.load(a["roll_path"]).any()


def test_a_parameter_change_is_caught(tmp_path, dataset):
    index_path = tmp_path / "f" / "index.csv"
    extract_dataset(dataset, CQT, SR, index_path, log=lambda m: None)
    with pytest.raises(LowrankAmtError, match="hop_length"):
        read_index(index_path, spec={**CQT, "hop_length": 512}, sample_rate=SR)
    with pytest.raises(LowrankAmtError, match="sample_rate"):
        read_index(index_path, spec=CQT, sample_rate=22050)
    params = read_json(tmp_path / "f" / "params.json")
    write_json(tmp_path / "f" / "params.json", {**params, "bins_per_semitone": 1})
    with pytest.raises(LowrankAmtError, match="params.json"):
        read_index(index_path)


def test_notes_beyond_the_piano_and_the_audio_are_dropped_or_clipped_with_a_warning(tmp_path):
    soundfile.write(tmp_path / "short.wav", sine(440.0, 1.0), SR)
    write_midi(tmp_path / "short.mid", [(0.0, 0.5, 69), (0.5, 1.6, 72), (1.2, 1.5, 74), (0.2, 0.4, 110), (0.1, 0.3, 10)])
    manifest = write_manifest(tmp_path, [("short", "test")])
    messages = []
    index = extract_dataset(manifest, CQT, SR, tmp_path / "f" / "index.csv", log=messages.append)
    warnings = [m for m in messages if m.startswith("warning")]
    assert len(warnings) == 2 and all("short.mid" in m for m in warnings)
    assert f"audio file {tmp_path / 'short.wav'} is shorter" in warnings[1]  # the audio is named too
    assert "2 note(s) outside the piano range" in warnings[0] and "1 note(s) dropped" in warnings[1]
    roll = np.load(tmp_path / "f" / "short.roll.npy")
    assert roll.shape[1] == index.n_frames[0]
    assert sorted(np.flatnonzero(roll.any(axis=1)) + 21) == [69, 72]
    assert roll[72 - 21, -1] == 1  # clipped to the end of the audio, not dropped


@pytest.mark.parametrize("problem", ["no notes", "only out-of-range notes", "empty audio", "zero-byte audio", "corrupt audio",
                                     "NaN audio", "infinite audio"])
def test_unusable_input_stops_with_an_error_naming_the_file(tmp_path, problem):
    soundfile.write(tmp_path / "x.wav", sine(440.0, 1.0), SR)
    write_midi(tmp_path / "x.mid", [(0.0, 0.5, 69)])
    culprit = "x.wav"
    if problem == "no notes":
        write_midi(tmp_path / "x.mid", [])
        culprit = "x.mid"
    elif problem == "only out-of-range notes":
        write_midi(tmp_path / "x.mid", [(0.0, 0.5, 12)])
        culprit = "x.mid"
    elif problem == "empty audio":
        soundfile.write(tmp_path / "x.wav", np.zeros(0), SR)
    elif problem == "zero-byte audio":
        (tmp_path / "x.wav").write_bytes(b"")
    elif problem in ("NaN audio", "infinite audio"):
        audio = sine(440.0, 1.0).astype(np.float32)
        audio[100:103] = np.nan if problem == "NaN audio" else np.inf
        soundfile.write(tmp_path / "x.wav", audio, SR, subtype="FLOAT")
        culprit = "x.wav has 3 sample.s. that are NaN or infinite"
    else:
        (tmp_path / "x.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    manifest = write_manifest(tmp_path, [("x", "test")])
    with pytest.raises(LowrankAmtError, match=culprit):
        extract_dataset(manifest, CQT, SR, tmp_path / "f" / "index.csv", log=lambda m: None)
    assert not (tmp_path / "f" / "index.csv").exists()


def test_unknown_kind_and_nyquist_are_refused():
    with pytest.raises(LowrankAmtError, match="mfcc"):
        compute_features(np.zeros(1000, np.float32), {"kind": "mfcc"}, SR)
    with pytest.raises(LowrankAmtError, match="Nyquist"):
        compute_features(np.zeros(1000, np.float32), {**CQT, "n_semitones": 100}, 8000)
