"""``lowrank-amt transcribe`` on recordings made here (harmonic tones, no fluidsynth) with
a model built from known harmonic templates: any format, rate and channel count in; a
long recording in chunks gives the notes of one pass; steering keeps its promises; bad
input is one line naming the thing."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile

from lowrank_amt import families, recordings
from lowrank_amt.cli import main
from lowrank_amt.signal.feature_cache import params_hash
from lowrank_amt.signal.spectrogram import bin_frequencies, feature_params
from lowrank_amt.runtime.io import write_json
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.model_file import save_model
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.decoding.steering import Steering, parse_key, scale_keys

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RATE = 22050
CQT = {"kind": "cqt", "hop_length": 512, "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}
DECODING = {"threshold": 0.15, "onset": "peaks", "offset_fraction": 0.1, "min_note_seconds": 0.05,
            "adaptive_seconds": 0.25}
QUIET = dict(log=lambda m: None)


#: Partial amplitudes of the model's instrument (1/h) and of "another piano".
PROFILE = tuple(1 / h for h in range(1, 7))
OTHER_PIANO = (0.5, 1.0, 0.1, 0.7, 0.05, 0.5)


def tone(pitch, seconds, rate=RATE, profile=PROFILE):
    """A decaying harmonic tone: partials 1..6 at ``profile``."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    partials = sum(a * np.sin(2 * np.pi * h * f0 * t) for h, a in enumerate(profile, 1) if h * f0 < rate / 2)
    return partials * np.exp(-t / 0.8)


def piece(rng, seconds, n_notes, rate=RATE, pitches=(40, 85), profile=PROFILE):
    """Audio and reference notes: ``n_notes`` random tones of 0.3-0.8 s."""
    audio = np.zeros(int(seconds * rate) + rate)
    starts = np.sort(rng.uniform(0, seconds - 1, n_notes))
    notes = []
    for start in starts:
        pitch, length = int(rng.integers(*pitches)), float(rng.uniform(0.3, 0.8))
        a = int(start * rate)
        audio[a:a + int(length * rate)] += 0.2 * tone(pitch, length, rate, profile)
        notes.append((start, start + length, pitch))
    return audio[: int(seconds * rate)], notes


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A supervised-NMF model folder whose templates are the harmonic combs of the tones."""
    folder = tmp_path_factory.mktemp("model")
    midi = 69 + 12 * np.log2(bin_frequencies(CQT) / 440.0)
    W = np.stack([sum(np.exp(-0.5 * ((midi - p - 12 * np.log2(h)) / 0.2) ** 2) / h for h in range(1, 7))
                  for p in range(21, 109)], axis=1) + 1e-4
    spec = families.resolve({"family": "nmf", "supervision": "supervised", "transcribe_iterations": 50,
                             "device": "cpu"})[1]
    params = feature_params(CQT, RATE)
    save_model(folder / "model.npz", "nmf", spec, {"W": (W / W.sum(axis=0)).astype(np.float32),
                                                     "template_keys": np.arange(88)},
               features={**params, "params_hash": params_hash(params)}, provenance={"dataset": "tones"})
    write_json(folder / "decoding.json", {"params": DECODING})
    return folder


def note_f(midi_path, notes):
    ref = np.array([n[:2] for n in notes]), np.array([n[2] for n in notes])
    est = read_midi_notes(midi_path)
    return note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"]


def test_any_format_rate_and_channels_transcribe_alike(model, tmp_path):
    audio, notes = piece(np.random.default_rng(0), 8.0, 12)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    soundfile.write(tmp_path / "in" / "mono.wav", audio, RATE)
    soundfile.write(tmp_path / "in" / "stereo.flac", np.stack([audio, audio], axis=1), RATE)
    soundfile.write(tmp_path / "in" / "sub" / "hi-rate.ogg", piece(np.random.default_rng(0), 8.0, 12, 44100)[0],
                    44100)
    soundfile.write(tmp_path / "in" / "lossy.mp3", audio, RATE)
    assert main(["transcribe", "--model", str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--plot"]) == 0
    rng = np.random.default_rng(9)  # as many random notes, scored the same way
    starts = np.sort(rng.uniform(0, 7, len(notes)))
    random_f = note_metrics(np.array([n[:2] for n in notes]), np.array([n[2] for n in notes]),
                            np.stack([starts, starts + 0.5], axis=1), rng.integers(40, 85, len(notes)))["note_onset_f"]
    mono_f = note_f(tmp_path / "out" / "mono.mid", notes)
    assert mono_f > max(0.6, random_f + 0.5)
    assert read_midi_notes(tmp_path / "out" / "stereo.mid")[1].tolist() == read_midi_notes(tmp_path / "out" / "mono.mid")[1].tolist()
    assert abs(note_f(tmp_path / "out" / "sub" / "hi-rate.mid", notes) - mono_f) < 0.1  # resampled, lossy
    assert abs(note_f(tmp_path / "out" / "lossy.mid", notes) - mono_f) < 0.1
    for stem in ("mono", "stereo", "sub/hi-rate", "lossy"):
        table = pd.read_csv(tmp_path / "out" / f"{stem}.csv")
        assert list(table.columns) == ["onset_s", "offset_s", "pitch", "velocity"] and len(table) > 8
    assert (tmp_path / "out" / "mono.png").stat().st_size > 0
    assert not list((tmp_path / "out").glob(".lowrank-amt-*"))  # the temporary outputs are gone


def test_a_long_recording_in_chunks_gives_the_notes_of_one_pass(model, tmp_path, monkeypatch):
    audio, notes = piece(np.random.default_rng(1), 40.0, 60)
    soundfile.write(tmp_path / "long.wav", audio, RATE)
    recordings.transcribe_files(model, [tmp_path / "long.wav"], tmp_path / "whole", **QUIET)
    monkeypatch.setattr(recordings, "CHUNK_SECONDS", 7.0)
    monkeypatch.setattr(recordings, "DECODE_SECONDS", 9.0)
    monkeypatch.setattr(recordings, "DECODE_MARGIN_SECONDS", 3.0)
    messages = []
    recordings.transcribe_files(model, [tmp_path / "long.wav"], tmp_path / "chunked", log=messages.append)
    assert any("6/6 chunks" in m for m in messages)  # 40 s in chunks of 7 s: a progress bar
    whole, chunked = read_midi_notes(tmp_path / "whole" / "long.mid"), read_midi_notes(tmp_path / "chunked" / "long.mid")
    agreement = note_metrics(whole[0], whole[1], chunked[0], chunked[1], onset_tolerance=0.02)["note_onset_f"]
    assert agreement > 0.97 and note_f(tmp_path / "chunked" / "long.mid", notes) > 0.6


def test_steering_keeps_its_promises(model, tmp_path):
    audio, notes = piece(np.random.default_rng(2), 10.0, 20)
    soundfile.write(tmp_path / "x.wav", audio, RATE)
    recordings.transcribe_files(model, [tmp_path / "x.wav"], tmp_path / "free", **QUIET)
    free_notes = read_midi_notes(tmp_path / "free" / "x.mid")
    free = free_notes[1]
    low, high = int(np.percentile(free, 25)), int(np.percentile(free, 75))
    steering = Steering.from_options(pitch_range=(str(low), str(high)), drop_keys=[str(low + 1)])
    recordings.transcribe_files(model, [tmp_path / "x.wav"], tmp_path / "steered", steering=steering, **QUIET)
    steered_notes = read_midi_notes(tmp_path / "steered" / "x.mid")
    steered = steered_notes[1]
    assert len(steered) and steered.min() >= low and steered.max() <= high and (steered != low + 1).all()
    # the free transcription's notes that steering allows are still found
    kept = (free >= low) & (free <= high) & (free != low + 1)
    recall = note_metrics(free_notes[0][kept], free[kept], steered_notes[0], steered)["note_onset_r"]
    assert recall > 0.8


def perturbed_score(notes, rng, jitter=0.1, share=0.1):
    """The notes with onsets and offsets moved by up to ``jitter`` s, ``share`` of them
    deleted and as many random ones added."""
    kept = [n for n in notes if rng.random() >= share]
    moved = [(max(0.0, s + rng.uniform(-jitter, jitter)), e + rng.uniform(-jitter, jitter), p) for s, e, p in kept]
    extra = [(s, s + 0.4, int(rng.integers(40, 85))) for s in rng.uniform(0, 9, max(1, round(share * len(notes))))]
    return sorted(moved + extra)


def test_a_perturbed_score_beats_plain_transcription(model, tmp_path):
    from lowrank_amt.evaluation.notes import write_midi_notes
    rng = np.random.default_rng(4)
    audio, notes = piece(rng, 10.0, 24)
    soundfile.write(tmp_path / "x.wav", audio, RATE)
    score = perturbed_score(notes, rng)
    write_midi_notes(tmp_path / "score.mid", [n[:2] for n in score], [n[2] for n in score])
    recordings.transcribe_files(model, [tmp_path / "x.wav"], tmp_path / "plain", **QUIET)
    for weight in (0.0, 0.3):
        steering = Steering.from_options(score=tmp_path / "score.mid", score_tolerance=0.15, score_weight=weight)
        recordings.transcribe_files(model, [tmp_path / "x.wav"], tmp_path / f"w{weight}", steering=steering, **QUIET)
    plain_f = note_f(tmp_path / "plain" / "x.mid", notes)
    confined_f, informed_f = (note_f(tmp_path / f"w{w}" / "x.mid", notes) for w in (0.0, 0.3))
    assert confined_f > plain_f + 0.05 and informed_f > plain_f + 0.1 and informed_f > 0.9, \
        (plain_f, confined_f, informed_f)
    # confined to the score's windows: no note outside them
    score_notes = read_midi_notes(tmp_path / "score.mid")
    for (start, _), pitch in zip(*read_midi_notes(tmp_path / "w0.0" / "x.mid")[:2]):
        assert any(p == pitch and s - 0.2 <= start <= e + 0.15 for (s, e), p in zip(*score_notes[:2]))


def test_a_dictionary_adapts_to_another_piano(model, tmp_path):
    import torch
    from lowrank_amt.factorization.activations import track_activations
    from lowrank_amt.signal.spectrogram import compute_features
    from lowrank_amt.model_file import load_model
    from lowrank_amt.evaluation.notes import write_midi_notes
    # a scale on the other piano, with its MIDI: the adaptation recording
    keys = np.arange(40, 85, 2)
    scale = np.concatenate([0.2 * tone(k, 0.5, profile=OTHER_PIANO) for k in keys])
    soundfile.write(tmp_path / "scale.wav", scale, RATE)
    write_midi_notes(tmp_path / "scale.mid", [(0.5 * i, 0.5 * i + 0.5) for i in range(len(keys))], keys)
    trained = load_model(model)
    adapted = trained.family.adapt(trained.arrays, trained.spec, *recordings.adaptation_data(
        trained, tmp_path / "scale.wav", tmp_path / "scale.mid"), torch.device("cpu"), 30)
    # isolated notes of the other piano (other keys than the scale's too): fitted better
    isolated = np.concatenate([0.2 * tone(k, 0.5, profile=OTHER_PIANO) for k in range(41, 85, 3)])
    V = compute_features(isolated, CQT, RATE)

    def misfit(arrays):
        H = track_activations(trained.family, V, arrays["W"], np.arange(88), trained.spec, torch.device("cpu"))["note"]
        return float(np.sum(V * np.log((V + 1e-9) / (arrays["W"] @ H + 1e-9)) - V + arrays["W"] @ H))
    assert misfit(adapted) < 0.8 * misfit(trained.arrays)
    # and it transcribes that piano better
    audio, notes = piece(np.random.default_rng(5), 10.0, 20, profile=OTHER_PIANO)
    soundfile.write(tmp_path / "other.wav", audio, RATE)
    recordings.transcribe_files(model, [tmp_path / "other.wav"], tmp_path / "plain", **QUIET)
    recordings.transcribe_files(model, [tmp_path / "other.wav"], tmp_path / "adapted", adapt=(
        tmp_path / "scale.wav", tmp_path / "scale.mid"), adapt_iterations=30, **QUIET)
    plain_f, adapted_f = (note_f(tmp_path / run / "other.mid", notes) for run in ("plain", "adapted"))
    assert adapted_f > plain_f + 0.1, (plain_f, adapted_f)


def test_a_score_informed_transcription_gives_every_note_the_decoders_velocity(model, tmp_path):
    """Aligned score notes and decoded notes alike take the validation-fitted curve's
    velocities (here a flat 64), never 127 x their peak."""
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    curve = {"intercept": 64.0, "slope": 0.0, "key_offsets": [0.0] * 88}
    write_json(folder / "decoding.json", {"params": {**DECODING, "velocity_curve": curve}})
    rng = np.random.default_rng(11)
    audio, notes = piece(rng, 6.0, 10)
    soundfile.write(tmp_path / "p.wav", audio, RATE)
    score = perturbed_score(notes, rng)
    from lowrank_amt.evaluation.notes import write_midi_notes
    write_midi_notes(tmp_path / "score.mid", np.array([n[:2] for n in score]), [n[2] for n in score])
    recordings.transcribe_files(folder, [tmp_path / "p.wav"], tmp_path / "out", **QUIET,
                                steering=Steering.from_options(score=tmp_path / "score.mid"))
    velocities = read_midi_notes(tmp_path / "out" / "p.mid")[2]
    assert len(velocities) >= 5 and set(velocities.tolist()) == {64}, velocities


def test_score_notes_are_aligned_to_the_activations_or_left_out():
    from lowrank_amt.decoding.decode import score_aligned_notes
    rate = 50.0
    H = np.zeros((88, 200))
    H[60 - 21, 55:80] = np.linspace(1.0, 0.2, 25)  # played at 1.1 s
    H[64 - 21, 120:140] = 0.02  # barely there: under the threshold
    score = np.array([[1.0, 1.5], [2.4, 2.8], [3.0, 3.2]]), np.array([60, 64, 67])  # 67: not played at all
    intervals, pitches, _ = score_aligned_notes(H, rate, *score, tolerance=0.2, threshold=0.1, offset_fraction=0.3)
    assert pitches.tolist() == [60] and intervals[0, 0] == pytest.approx(1.1)
    # a piece of the recording starting at frame 40: the same note, 0.8 s into the piece
    piece = score_aligned_notes(H[:, 40:], rate, *score, tolerance=0.2, threshold=0.1, offset_fraction=0.3,
                                peak=1.0, first_frame=40)
    assert piece[1].tolist() == [60] and piece[0][0, 0] == pytest.approx(1.1 - 0.8)


def test_a_scale_penalises_rather_than_forbids():
    steering = Steering.from_options(scale="D major", weight=0.5)
    gains = steering.gains()
    assert gains[parse_key("D4") - 21] == 1.0 and gains[parse_key("C4") - 21] == 0.5  # C is not in D major
    assert scale_keys("D major") & {parse_key("F#4"), parse_key("C#5")} == {66, 73}
    outputs = steering.apply({"note": np.ones((88, 3))})
    assert outputs["note"][parse_key("C4") - 21].tolist() == [0.5] * 3


@pytest.mark.parametrize("problem", ["empty folder", "unknown model", "NaN audio", "missing input", "bad key",
                                     "empty score"])
def test_bad_input_is_one_line_naming_it(model, tmp_path, capsys, problem):
    (tmp_path / "in").mkdir()
    args = ["transcribe", "--model", str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    culprit = "folder .*in has no audio files"
    if problem == "unknown model":
        args[2], culprit = "no_such_model", "--model no_such_model: no model folder or file there"
    elif problem == "NaN audio":
        audio = piece(np.random.default_rng(3), 3.0, 3)[0].astype(np.float32)
        audio[500] = np.nan
        soundfile.write(tmp_path / "in" / "bad.wav", audio, RATE, subtype="FLOAT")
        culprit = "bad.wav has .*NaN or infinite"
    elif problem == "missing input":
        args[3], culprit = str(tmp_path / "nothing.wav"), "nothing.wav does not exist"
    elif problem == "bad key":
        soundfile.write(tmp_path / "in" / "x.wav", piece(np.random.default_rng(3), 3.0, 3)[0], RATE)
        args += ["--pitch-range", "C9", "C4"]
        culprit = "key 'C9' .MIDI 120. is not a piano key"
    elif problem == "empty score":
        from lowrank_amt.evaluation.notes import write_midi_notes
        soundfile.write(tmp_path / "in" / "x.wav", piece(np.random.default_rng(3), 3.0, 3)[0], RATE)
        write_midi_notes(tmp_path / "empty.mid", np.zeros((0, 2)), [])
        args += ["--score", str(tmp_path / "empty.mid")]
        culprit = "MIDI score .*empty.mid has no notes"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(culprit, err[0]), err
    assert not list(tmp_path.glob("out/**/*.mid"))


def test_silence_gives_no_notes_and_no_nan(model, tmp_path):
    soundfile.write(tmp_path / "silence.wav", np.zeros(3 * RATE), RATE)
    recordings.transcribe_files(model, [tmp_path / "silence.wav"], tmp_path / "out", plot=True, **QUIET)
    assert len(read_midi_notes(tmp_path / "out" / "silence.mid")[1]) == 0
    assert pd.read_csv(tmp_path / "out" / "silence.csv").empty


def test_model_provenance_is_kept(model):
    provenance = json.loads(str(np.load(model / "model.npz")["provenance"]))
    assert provenance == {"dataset": "tones"}
