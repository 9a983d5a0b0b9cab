"""The multi-instrument and guitar corpora (datasets/ensemble.py), instrument classes,
instrument-aware metrics, instrument-labelled dictionaries and separation."""

from __future__ import annotations

import hashlib

import numpy as np
import pretty_midi
import pytest
import soundfile

from lowrank_amt import families
from lowrank_amt.datasets import ensemble
from lowrank_amt.datasets.manifest import stem_paths
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.instruments import (CLASS_PROGRAMS, instrument_class, is_instrument_aware, read_class_notes,
                                     track_class, write_class_tracks)
from lowrank_amt.evaluation.metrics import instrument_metrics, note_metrics
from lowrank_amt.evaluation.separation import oracle_stems, read_stems, stem_scores

SR = 22050
#: one FluidR3 GM timbre per class and split: a small corpus renders in seconds
TRAIN = {"bass": ["FluidR3_GM.sf2:33"], "piano": ["FluidR3_GM.sf2:0"], "reed": ["FluidR3_GM.sf2:65"],
         "strings": ["FluidR3_GM.sf2:48"]}
TEST = {"bass": ["FluidR3_GM.sf2:34"], "piano": ["FluidR3_GM.sf2:2"], "reed": ["FluidR3_GM.sf2:66"],
        "strings": ["FluidR3_GM.sf2:49"]}
BAND = {"kind": "ensemble", "arrangement": "band", "n_train": 1, "n_validation": 2, "n_test": 1, "piece_seconds": 8,
        "drums": True, "train_timbres": TRAIN, "test_timbres": TEST, "isolated_velocities": [80]}


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def band(tmp_path_factory):
    pytest.importorskip("lowrank_amt.datasets.rendering").find_fluidsynth()
    folder = tmp_path_factory.mktemp("band")
    ensemble.prepare(BAND, folder / "manifest.csv", SR, jobs=2, log=lambda m: None)
    return folder


@pytest.fixture(scope="module")
def band_model(band, tmp_path_factory):
    """(feature index, model.npz) of supervised NMF with instrument templates on ``band``."""
    from lowrank_amt.stages import features, train as training
    folder = tmp_path_factory.mktemp("band_model")
    index = folder / "features" / "index.csv"
    features.extract_dataset(band / "manifest.csv", {"kind": "cqt", "hop_length": 512}, SR, index, log=lambda m: None)
    spec = {"family": "nmf", "supervision": "supervised", "instrument_templates": True, "train_iterations": 30,
            "transcribe_iterations": 50}
    model = folder / "model" / "model.npz"
    training.train(spec, index, model, model.with_name("loss.csv"), model.with_name("train.json"), log=lambda m: None)
    return index, model


def trained_on_band(spec: dict, index, folder):
    """(the model ``spec`` trains on the band's cache, the first test track's features,
    the model's outputs on them)."""
    from lowrank_amt.model_file import load_model
    from lowrank_amt.signal.feature_cache import load_track, read_index
    from lowrank_amt.stages import train as training
    training.train(spec, index, folder / "model.npz", folder / "loss.csv", folder / "train.json", log=lambda m: None)
    loaded = load_model(folder / "model.npz")
    features = load_track(read_index(index, "test").iloc[0])[0]
    return loaded, features, loaded.family.transcriber(loaded.arrays, loaded.spec, "cpu")(features)


def test_instrument_classes_follow_general_midi_families():
    assert [instrument_class(p) for p in (0, 25, 33, 48, 66)] == ["piano", "guitar", "bass", "strings", "reed"]
    assert sorted(p for r in CLASS_PROGRAMS.values() for p in r) == list(range(128))


def test_band_mixture_is_the_sum_of_its_stems_and_each_part_keeps_its_class_and_range(band):
    mix, rate = soundfile.read(band / "audio" / "test_00000.wav")
    stems = stem_paths(band / "audio" / "test_00000.wav")
    assert sorted(stems) == ["bass", "drums", "piano", "reed", "strings"]
    audio = {name: soundfile.read(path)[0] for name, path in stems.items()}
    assert rate == SR and {len(a) for a in audio.values()} == {len(mix)}
    np.testing.assert_allclose(mix, sum(audio.values()), atol=1.5 / 32768)  # the mixture's own rounding
    notes = read_class_notes(band / "midi" / "test_00000.mid")
    assert sorted(notes) == ["bass", "piano", "reed", "strings"]  # the drum track is no class
    for name, (_, pitches, _) in notes.items():
        low, high, _ = ensemble.PARTS["band"][name]
        assert len(pitches) and low <= pitches.min() and pitches.max() <= high
    programs = {i.name: i.program for i in pretty_midi.PrettyMIDI(str(band / "midi" / "test_00000.mid")).instruments}
    assert programs == {"bass": 34, "piano": 2, "reed": 66, "strings": 49, "drums": 0}  # the test pools'


def test_same_spec_same_bytes_and_isolated_notes_cover_each_class_range(band, tmp_path):
    spec = {**BAND, "n_validation": 0, "isolated_velocities": []}
    ensemble.prepare(spec, tmp_path / "manifest.csv", SR, log=lambda m: None)
    assert _md5(tmp_path / "audio" / "test_00000.wav") == _md5(band / "audio" / "test_00000.wav")
    isolated = sorted((band / "midi").glob("isolated_*.mid"))
    assert len(isolated) == 4
    for path in isolated:
        name = track_class(path)
        low, high, _ = ensemble.PARTS["band"][name]
        assert sorted(read_class_notes(path)[name][1]) == list(range(low, high + 1))


def test_guitar_voicings_are_playable_triads():
    for root in range(12):
        for minor in (False, True):
            voicing = ensemble.guitar_voicing(root, minor)
            strings = ensemble.OPEN_STRINGS[-len(voicing):]
            frets = [p - s for p, s in zip(voicing, strings)]
            assert min(frets) >= 0 and max(frets) - min(frets) <= 3  # one hand position
            third = 3 if minor else 4
            assert {p % 12 for p in voicing} == {root, (root + third) % 12, (root + 7) % 12}
            assert voicing[0] % 12 == root  # the root in the bass


def test_guitar_pieces_sound_at_most_one_note_per_string():
    midi = ensemble.compose_guitar(np.random.default_rng(3), 20, 25)
    notes = midi.instruments[0].notes
    times = np.arange(0, 20, 0.01)
    sounding = [(n.start <= times) & (times < n.end) for n in notes]
    assert np.sum(sounding, axis=0).max() <= 6
    assert all(40 <= n.pitch <= 84 for n in notes)


@pytest.mark.parametrize("key, value, message", [
    ("train_timbres", {**TRAIN, "bass": ["FluidR3_GM.sf2:0"]}, "train_timbres.bass: timbre 'FluidR3_GM.sf2:0' has program 0 (piano)"),
    ("test_timbres", {**TEST, "reed": ["FluidR3_GM.sf2:65"]}, "test_timbres.reed shares"),
    ("train_timbres", {**TRAIN, "guitar": ["FluidR3_GM.sf2:25"]}, "class 'guitar' is not a part of arrangement 'band'"),
    ("test_timbres", {k: v for k, v in TEST.items() if k != "piano"}, "test_timbres lacks a pool for part 'piano'"),
])
def test_pools_are_checked_with_one_line_naming_the_key(key, value, message):
    with pytest.raises(LowrankAmtError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ensemble.full_spec({**BAND, key: value})


def test_instrument_metrics_count_a_note_only_with_its_class():
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0, 10, 20))
    intervals = np.stack([onsets, onsets + 0.3], axis=1)
    pitches = rng.integers(40, 80, 20)
    velocities = np.full(20, 80)
    ref = {"bass": (intervals[:10], pitches[:10], velocities[:10]), "piano": (intervals[10:], pitches[10:], velocities[10:])}
    # every note found, but the piano's last five named bass
    est = {"bass": (np.concatenate([intervals[:10], intervals[15:]]), np.concatenate([pitches[:10], pitches[15:]]),
                    velocities[:15]),
           "piano": (intervals[10:15], pitches[10:15], velocities[:5])}
    scores = instrument_metrics(ref, est)
    agnostic = note_metrics(intervals, pitches, intervals, pitches)
    assert agnostic["note_onset_f"] == 1.0
    assert scores["instrument_note_onset_matches"] == 15
    assert scores["instrument_note_onset_f"] == pytest.approx(15 / 20)
    assert scores["class_bass_note_onset_f"] == pytest.approx(2 * 10 / (10 + 15))
    assert scores["class_piano_note_onset_f"] == pytest.approx(2 * 5 / (10 + 5))


def test_class_tracks_are_read_back_by_name_and_marked_instrument_aware(tmp_path):
    notes = (np.array([[0.5, 1.0]]), np.array([60]), np.array([90]))
    write_class_tracks(tmp_path / "t.mid", {"reed": notes, "bass": notes})
    assert is_instrument_aware(tmp_path / "t.mid")
    read = read_class_notes(tmp_path / "t.mid")
    assert sorted(read) == ["bass", "reed"] and read["reed"][1].tolist() == [60]


def test_stem_scores_match_si_sdr_written_out():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    estimate = 0.5 * reference + 0.1 * noise
    target = (estimate @ reference) / (reference @ reference) * reference
    expected = 10 * np.log10((target @ target) / ((estimate - target) @ (estimate - target)))
    scores = stem_scores({"bass": reference}, {"bass": estimate})
    assert scores["bass"]["si_sdr"] == pytest.approx(expected, abs=1e-3)
    assert scores["bass"]["si_sdr_sounding"] == pytest.approx(expected, abs=0.2)  # it sounds throughout


def test_si_sdr_where_the_stem_sounds_leaves_out_its_silences():
    """A stem silent in its second half, estimated well where it sounds and as noise in its
    silence: over the sounding half the score is that half's SI-SDR, written out."""
    rng = np.random.default_rng(2)
    reference = np.concatenate([rng.standard_normal(8192), np.zeros(8192)])
    estimate = reference + np.concatenate([0.1 * rng.standard_normal(8192), rng.standard_normal(8192)])
    half_ref, half_est = reference[:8192], estimate[:8192]
    target = (half_est @ half_ref) / (half_ref @ half_ref) * half_ref
    expected = 10 * np.log10((target @ target) / ((half_est - target) @ (half_est - target)))
    scores = stem_scores({"bass": reference}, {"bass": estimate})["bass"]
    assert scores["si_sdr_sounding"] == pytest.approx(expected, abs=1e-3)
    assert scores["si_sdr_sounding"] > scores["si_sdr"] + 10


def test_oracle_masks_separate_two_tones_far_apart():
    t = np.arange(SR) / SR
    low, high = 0.3 * np.sin(2 * np.pi * 110 * t), 0.3 * np.sin(2 * np.pi * 1760 * t)
    stems = oracle_stems({"bass": low, "reed": high}, low + high, 512)
    scores = stem_scores({"bass": low, "reed": high}, stems)
    assert min(s["si_sdr"] for s in scores.values()) > 20


def test_a_stem_of_another_length_or_rate_is_refused_naming_it(tmp_path):
    soundfile.write(tmp_path / "mix.wav", np.zeros(4000), SR)
    soundfile.write(tmp_path / "bass.wav", np.zeros(1000), SR)
    soundfile.write(tmp_path / "reed.wav", np.zeros(2000), SR // 2)
    with pytest.raises(LowrankAmtError, match="bass.wav has 1000 samples"):
        read_stems({"bass": tmp_path / "bass.wav"}, SR, 4000, tmp_path / "mix.wav")
    with pytest.raises(LowrankAmtError, match=f"reed.wav is at {SR // 2} Hz, its mixture .*mix.wav at {SR} Hz"):
        read_stems({"reed": tmp_path / "reed.wav"}, SR, 4000, tmp_path / "mix.wav")


def test_a_drum_only_track_has_no_class_and_no_notes_to_learn(tmp_path):
    from lowrank_amt.signal.targets import read_annotation
    midi = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(0, is_drum=True)
    kit.notes.append(pretty_midi.Note(90, 36, 0.0, 0.1))
    midi.instruments.append(kit)
    midi.write(str(tmp_path / "drums.mid"))
    with pytest.raises(LowrankAmtError, match="drums.mid has no pitched instrument"):
        track_class(tmp_path / "drums.mid")
    with pytest.raises(LowrankAmtError, match="drums.mid has no notes"):
        read_annotation(tmp_path / "drums.mid", 1.0)


def test_instrument_templates_name_instruments_and_separate_the_band(band, band_model):
    """From the corpus to the scores: class-labelled templates of the isolated notes;
    the key activations of the classes sum to the model's; each test note is written
    in its class's track; the stems are scored against the rendered ones, and the
    model's beat leaving the mixture whole (SI-SDR of the mixture as every stem)."""
    from lowrank_amt.signal.audio import load_audio
    from lowrank_amt.runtime.io import read_json
    from lowrank_amt.stages import evaluate as evaluation, transcribe as transcription
    index, model = band_model
    out = model.parent
    arrays = np.load(out / "model.npz")
    classes = arrays["template_classes"]
    assert sorted(np.unique(classes)) == [0, 4, 5, 7]  # piano, bass, strings, reed (CLASSES)
    assert len(classes) == len(arrays["template_keys"]) == sum(h - l + 1 for l, h, _ in ensemble.PARTS["band"].values())
    transcription.activations(out / "model.npz", index, out / "activations.npz", out / "activations.json",
                              manifest_path=band / "manifest.csv", log=lambda m: None)
    saved = np.load(out / "activations.npz")
    by_class = saved["test__test_00000__by_class"].astype(np.float32)
    np.testing.assert_allclose(by_class.sum(axis=0), saved["test__test_00000"].astype(np.float32), rtol=2e-2, atol=1e-2)
    transcription.decode(out / "model.npz", out / "activations.npz", index, {"thresholds": [0.05, 0.1, 0.2]},
                         {"onset_tolerance": 0.05, "offset_ratio": 0.2}, out / "midi", out / "decoding.json",
                         log=lambda m: None)
    assert is_instrument_aware(out / "midi" / "test_00000.mid")
    table = evaluation.evaluate(out / "midi", index, {"onset_tolerance": 0.05, "offset_ratio": 0.2},
                                out / "per_track.csv", log=lambda m: None)
    assert 0 < table["instrument_note_onset_f"].iloc[0] <= table["note_onset_f"].iloc[0]
    separation = read_json(out / "activations.json")["separation"]
    mix = load_audio(band / "audio" / "test_00000.wav", SR)
    references = read_stems({k: v for k, v in stem_paths(band / "audio" / "test_00000.wav").items()
                             if k != "drums"}, SR, len(mix))
    whole = np.mean([s["si_sdr"] for s in stem_scores(references, {k: mix for k in references}).values()])
    assert separation["si_sdr"] > whole
    assert separation["oracle_si_sdr"] > separation["si_sdr"]
    assert separation["oracle_templates_si_sdr"] > separation["si_sdr"]  # templates of the test instruments


def test_transcribe_writes_a_track_per_instrument_and_the_stems(band, band_model, tmp_path):
    """``lowrank-amt transcribe --stems`` with a model of instrument templates: one MIDI
    track per class, an instrument column, and stems that sum to about the mixture."""
    from lowrank_amt.signal.audio import load_audio
    from lowrank_amt.recordings import transcribe_files
    _, model = band_model
    mix = band / "audio" / "test_00000.wav"
    written = transcribe_files(str(model.parent), [mix], tmp_path / "out", stems=True, log=lambda m: None)
    tracks = read_class_notes(written[0])
    assert is_instrument_aware(written[0]) and set(tracks) <= {"bass", "piano", "reed", "strings"} and tracks
    table = __import__("pandas").read_csv(written[0].with_suffix(".csv"))
    assert set(table["instrument"]) == set(tracks)
    stems = {p.stem: soundfile.read(p)[0] for p in sorted(written[0].with_suffix(".stems").glob("*.wav"))}
    assert sorted(stems) == ["bass", "piano", "reed", "strings"]
    audio = load_audio(mix, SR)
    residual = audio - sum(stems.values())
    assert np.sum(residual ** 2) < 0.01 * np.sum(audio ** 2)  # the masks share the mixture out


def test_stems_in_chunks_equal_the_stems_of_one_pass(band, band_model, tmp_path, monkeypatch):
    """``--stems`` separates in the chunks of the transcription: the band's mixture in
    chunks of 2 s (each read with the default margins) gives the stems of one pass to within 16-bit
    rounding and the activations' few MU iterations on other frames (SI-SDR of the chunked
    stem against the whole one above 40 dB), with a progress line."""
    from lowrank_amt import recordings
    _, model = band_model
    mix = band / "audio" / "test_00000.wav"
    recordings.transcribe_files(str(model.parent), [mix], tmp_path / "whole", stems=True, log=lambda m: None)
    monkeypatch.setattr(recordings, "CHUNK_SECONDS", 2.0)
    messages = []
    recordings.transcribe_files(str(model.parent), [mix], tmp_path / "chunked", stems=True, log=messages.append)
    done = [m.split()[-2] for m in messages if "stems [" in m]
    assert len(done) > 2 and done[-1] == f"{len(done)}/{len(done)}"  # chunks of its own, counted
    for whole in sorted((tmp_path / "whole" / "test_00000.stems").glob("*.wav")):
        a, b = soundfile.read(whole)[0], soundfile.read(tmp_path / "chunked" / "test_00000.stems" / whole.name)[0]
        assert a.shape == b.shape
        agreement = 10 * np.log10(np.sum(a ** 2) / max(np.sum((a - b) ** 2), 1e-20))
        assert agreement > 40, (whole.name, agreement)


def test_stems_need_a_model_of_instrument_templates(tmp_path):
    from lowrank_amt.recordings import transcribe_files
    wav = tmp_path / "x.wav"
    soundfile.write(wav, 0.1 * np.sin(np.arange(SR) * 0.05), SR)
    with pytest.raises(LowrankAmtError, match="does not separate stems"):
        transcribe_files("piano", [wav], tmp_path / "out", stems=True, log=lambda m: None)


def test_semi_supervised_instrument_templates_learn_each_class_where_it_plays(band, band_model, tmp_path):
    """Online MU from the isolated templates, each template masked by its class's roll:
    the layout is the dataset's classes x 88 keys, the validation loss falls, and the
    class rolls in the cache are the MIDI's, class by class."""
    from lowrank_amt.instruments import class_roll
    from lowrank_amt.signal.feature_cache import read_index
    from lowrank_amt.stages import train as training
    index, _ = band_model
    row = read_index(index, "train").iloc[0]
    assert row["classes"] == "piano;bass;strings;reed"
    rolls = np.load(row["class_roll_path"])
    np.testing.assert_array_equal(rolls, class_roll(row["midi_path"], ["piano", "bass", "strings", "reed"],
                                                    rolls.shape[1], row["frame_rate"]))
    np.testing.assert_array_equal(rolls.reshape(4, 88, -1).max(axis=0), np.load(row["roll_path"]))
    spec = {"family": "nmf", "supervision": "semi_supervised", "form": "online_mu", "instrument_templates": True,
            "dictionary_start": "isolated", "train_iterations": 20, "epochs": 3, "patience": 0, "batch_frames": 256,
            "validation_note_f_every": 0}
    model = tmp_path / "model.npz"
    training.train(spec, index, model, tmp_path / "loss.csv", tmp_path / "train.json", log=lambda m: None)
    arrays = np.load(model)
    assert sorted(np.unique(arrays["template_classes"])) == [0, 4, 5, 7]
    losses = __import__("pandas").read_csv(tmp_path / "loss.csv")
    validation = losses[losses["split"] == "validation"]["loss"].to_numpy()
    assert validation[-1] < validation[0]


def test_onsets_frames_with_instrument_outputs_names_the_instrument(band, band_model, tmp_path):
    """One set of heads per class: 88 x classes outputs trained on the class rolls; the
    transcriber gives each class's posteriorgram and the largest as the note output."""
    index, _ = band_model
    spec = {"family": "network", "architecture": "onsets_frames", "instrument_outputs": True, "channels": 4,
            "hidden": 16, "epochs": 2, "patience": 2, "batch_segments": 4, "segment_frames": 64}
    _, features, outputs = trained_on_band(spec, index, tmp_path)
    assert outputs["by_class"].shape == (4, 88, features.shape[1]) and outputs["classes"].tolist() == [0, 4, 5, 7]
    np.testing.assert_array_equal(outputs["note"], outputs["by_class"].max(axis=0))
    with pytest.raises(LowrankAmtError, match="instrument_outputs"):
        families.resolve({"family": "network", "architecture": "harmonic_net", "instrument_outputs": True})


def test_plot_stems_shows_each_rendered_stem_beside_the_separated_one(band, band_model, tmp_path):
    from lowrank_amt.stages.report import plot_stems
    _, model = band_model
    scores = plot_stems(str(model.parent), band / "audio" / "test_00000.wav", tmp_path / "stems.svg", seconds=4)
    assert sorted(scores) == ["bass", "piano", "reed", "strings"]
    assert (tmp_path / "stems.svg").read_text().count("SI-SDR") == 4


def test_the_unrolled_hybrid_on_instrument_templates_names_instruments_and_separates(band, band_model, tmp_path):
    """Learned MU layers on the class-labelled dictionary: the class outputs sum to its key
    activations, and its stems share the mixture out."""
    from lowrank_amt.signal.audio import load_audio
    from lowrank_amt.signal.feature_cache import cache_params
    from lowrank_amt.signal.spectrogram import bin_frequencies
    index, _ = band_model
    spec = {"family": "unrolled", "base": "nmf", "instrument_templates": True, "train_iterations": 20, "layers": 3,
            "epochs": 2, "patience": 2, "steps_per_epoch": 2, "batch_segments": 4, "segment_frames": 32}
    loaded, features, outputs = trained_on_band(spec, index, tmp_path)
    np.testing.assert_allclose(outputs["by_class"].sum(axis=0), outputs["note"], rtol=1e-4, atol=1e-6)
    mixture = load_audio(band / "audio" / "test_00000.wav", SR)
    stems = loaded.family.separator(loaded.arrays, loaded.spec, "cpu")(features, mixture, SR, 512,
                                                                       bin_frequencies(cache_params(index)))
    assert sorted(stems) == ["bass", "piano", "reed", "strings"]
    residual = mixture - sum(stems.values())
    assert np.sum(residual ** 2) < 0.01 * np.sum(mixture ** 2)


def test_the_class_loss_needs_instrument_templates():
    with pytest.raises(LowrankAmtError, match="'class_loss_weight' needs 'instrument_templates: true'"):
        families.resolve({"family": "unrolled", "class_loss_weight": 1.0})
