"""The synthetic dataset: deterministic MIDI, real polyphony, real rendered audio."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from lowrank_amt.datasets.composition import MAJOR, MINOR, compose_piece, isolated_notes, random_piece
from lowrank_amt.datasets.manifest import read_manifest
from lowrank_amt.datasets.rendering import find_soundfont, parse_timbre, render, select_bank
from lowrank_amt.datasets.synth import full_spec, n_train_pieces, plan_tracks, prepare
from lowrank_amt.errors import LowrankAmtError

SPEC = {"kind": "synthetic", "seed": 3, "n_train": 1, "n_validation": 1, "n_test": 1,
        "piece_seconds": 3, "max_polyphony": 4, "pitch_range": [36, 96], "train_programs": [0],
        "test_programs": [2], "soundfont": "auto", "isolated_velocities": [90]}


def _notes(midi):
    return [(n.start, n.end, n.pitch, n.velocity) for n in midi.instruments[0].notes]


def _max_polyphony(notes):
    events = sorted([(s, 1) for s, *_ in notes] + [(e, -1) for _, e, *_ in notes])
    level, peak = 0, 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_pieces_are_deterministic_polyphonic_and_varied():
    make = lambda seed: random_piece(np.random.default_rng(seed), 20, 4, (36, 96))  # noqa: E731
    notes = _notes(make(7))
    assert notes == _notes(make(7))
    assert notes != _notes(make(8))
    assert 2 <= _max_polyphony(notes) <= 4
    pitches, velocities = {n[2] for n in notes}, {n[3] for n in notes}
    durations = [e - s for s, e, *_ in notes]
    assert len(pitches) > 15 and len(velocities) > 10 and max(durations) > 3 * min(durations)
    assert all(36 <= p <= 96 for p in pitches)


def test_isolated_notes_cover_every_key_one_at_a_time():
    notes = _notes(isolated_notes(80))
    assert [n[2] for n in notes] == list(range(21, 109))
    assert _max_polyphony(notes) == 1


def test_prepare_renders_audio_and_a_manifest(tmp_path):
    manifest = tmp_path / "d" / "manifest.csv"
    prepare(SPEC, manifest, 16000, jobs=2, log=lambda m: None)
    table = read_manifest(manifest)
    assert list(table["split"]) == ["train", "validation", "test", "isolated"]
    font = find_soundfont().stem
    assert list(table["instrument"]) == [f"gm{p}:{font}" for p in (0, 0, 2, 0)]
    for row in table.itertuples():
        audio, rate = soundfile.read(row.audio_path)
        assert rate == 16000
        assert row.duration == pytest.approx(len(audio) / rate, abs=1e-3)
        assert np.abs(audio).max() > 0.01  # a real, audible rendering
    isolated = table[table["split"] == "isolated"].iloc[0]
    assert isolated.duration > 88 * 1.5


def test_a_corpus_rendered_in_parallel_is_the_same_bytes_as_one_rendered_alone(tmp_path):
    """Each piece depends only on (seed, split, index), never on the thread that renders it."""
    spec = {**SPEC, "n_train": 4, "n_test": 2, "isolated_velocities": []}
    prepare(spec, tmp_path / "alone" / "manifest.csv", 16000, jobs=1, log=lambda m: None)
    prepare(spec, tmp_path / "parallel" / "manifest.csv", 16000, jobs=3, log=lambda m: None)
    files = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*") if p.is_file())
    assert len(files) == 2 * 7 + 1  # audio and MIDI of 7 pieces, the manifest
    for name in files:
        assert (tmp_path / "alone" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes(), name


def test_missing_soundfont_is_named(tmp_path):
    with pytest.raises(LowrankAmtError, match="nowhere.sf2"):
        find_soundfont(str(tmp_path / "nowhere.sf2"))
    with pytest.raises(LowrankAmtError, match="nowhere.sf2"):
        prepare({**SPEC, "soundfont": str(tmp_path / "nowhere.sf2")},
                          tmp_path / "d" / "manifest.csv", 16000, log=lambda m: None)
    assert not (tmp_path / "d" / "manifest.csv").exists()


def test_timbres_cycle_per_split_and_name_their_isolated_tracks():
    spec = {**SPEC, "n_train": 3, "train_timbres": ["auto:0", "auto:8:0", "/x/other.sf3:1"],
            "test_timbres": ["auto:2"]}
    tracks = {t["track_id"]: t for t in plan_tracks(spec)}
    assert [(tracks[f"train_0000{i}"]["bank"], tracks[f"train_0000{i}"]["program"]) for i in range(3)] == \
        [(0, 0), (8, 0), (0, 1)]
    assert tracks["test_00000"]["program"] == 2
    assert {"isolated_p000_v090", "isolated_auto_b008_p000_v090", "isolated_other_b000_p001_v090"} <= set(tracks)
    assert parse_timbre("a/b.sf2:127:3") == ("a/b.sf2", 127, 3)
    for bad in ("FluidR3_GM.sf2", "x:200", "x:a:1"):
        with pytest.raises(LowrankAmtError, match="timbre"):
            parse_timbre(bad)


def test_a_test_timbre_heard_in_training_is_refused_however_named():
    font = str(find_soundfont())
    with pytest.raises(LowrankAmtError, match="test timbres share"):
        full_spec({**SPEC, "train_timbres": [f"{font}:0"], "test_timbres": ["auto:0"]})


def test_musescore_soundfonts_are_refused(tmp_path):
    reserved = tmp_path / "MuseScore_General.sf3"
    reserved.write_bytes(b"RIFF")
    with pytest.raises(LowrankAmtError, match="reserved for held-out evaluation"):
        find_soundfont(str(reserved))
    alias = tmp_path / "default.sf2"  # a neutral name pointing at one is refused too
    alias.symlink_to(reserved)
    with pytest.raises(LowrankAmtError, match="MuseScore"):
        find_soundfont(str(alias))


def test_bank_select_reaches_fluidsynth(tmp_path):
    """A bank's preset sounds unlike bank 0's (FluidR3 GM's bank 8 program 4: Detuned EP 1,
    not bank 0's Rhodes): the CC0 precedes the program change."""
    midi = isolated_notes(90, 4)
    midi.instruments[0].notes = midi.instruments[0].notes[:1]
    audio = {}
    for bank in (0, 8):
        path = tmp_path / f"b{bank}.mid"
        midi.write(str(path))
        select_bank(path, bank)
        render(path, tmp_path / f"b{bank}.wav", find_soundfont(), 16000)
        audio[bank] = soundfile.read(str(tmp_path / f"b{bank}.wav"))[0]
    assert np.abs(audio[0]).max() > 0.01 and np.abs(audio[8]).max() > 0.01
    n = min(len(audio[0]), len(audio[8]))
    assert np.abs(audio[0][:n] - audio[8][:n]).max() > 0.1 * np.abs(audio[0]).max()


def test_manifest_with_missing_columns_is_refused(tmp_path):
    pd.DataFrame({"track_id": ["a"], "split": ["test"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(LowrankAmtError, match="audio_path"):
        read_manifest(tmp_path / "m.csv")


# --- structured pieces -------------------------------------------------------------

def _pieces(n=12, seconds=20, polyphony=8):
    return [compose_piece(np.random.default_rng(i), seconds, polyphony, (21, 108), 0, pedal=i % 2 == 0)
            for i in range(n)]


def _polyphony_levels(notes):
    """Number of notes sounding at each onset (releases at the same instant come first)."""
    events = sorted([(s, 1) for s, *_ in notes] + [(e, -1) for _, e, *_ in notes])
    level, levels = 0, []
    for _, step in events:
        level += step
        if step > 0:
            levels.append(level)
    return levels


def test_structured_pieces_are_deterministic_and_respect_limits():
    a, b = _notes(compose_piece(np.random.default_rng(5), 20)), _notes(compose_piece(np.random.default_rng(5), 20))
    assert a == b and a != _notes(compose_piece(np.random.default_rng(6), 20))
    for piece in _pieces():
        notes = _notes(piece)
        assert max(_polyphony_levels(notes)) <= 8
        assert all(21 <= n[2] <= 108 and 0 <= n[0] < n[1] <= 20 for n in notes)


def test_corpus_spans_polyphony_registers_dynamics_and_pedal():
    pieces = _pieces()
    notes = [_notes(p) for p in pieces]
    levels = {lvl for ns in notes for lvl in _polyphony_levels(ns)}
    assert {1, 2, 3, 4, 5, 6, 7, 8} <= levels
    pitches = [n[2] for ns in notes for n in ns]
    assert min(pitches) < 36 and max(pitches) > 90
    velocities = [n[3] for ns in notes for n in ns]
    assert max(velocities) - min(velocities) > 60
    pedalled = [any(c.number == 64 for c in p.instruments[0].control_changes) for p in pieces]
    assert pedalled == [i % 2 == 0 for i in range(len(pieces))]


def test_pieces_are_tonal_and_have_runs_and_repeated_notes():
    """A random-note generator fails these: most notes fit one major or harmonic-minor
    scale, some passages step through the scale, and some keys are struck repeatedly."""
    runs = repeats = 0
    for piece in _pieces(8, 30):
        notes = _notes(piece)
        classes = np.bincount([n[2] % 12 for n in notes], minlength=12)
        best = max(classes[[(t + s) % 12 for s in scale]].sum() for t in range(12) for scale in (MAJOR, MINOR))
        assert best / len(notes) > 0.9
        pitches = [n[2] for n in sorted(notes)]
        steps = np.diff(pitches)
        runs += any(all(1 <= abs(d) <= 2 for d in steps[i:i + 5]) for i in range(len(steps) - 5))
        by_key = {}
        for s, _, p, _ in sorted(notes):
            by_key.setdefault(p, []).append(s)
        repeats += any(np.sum(np.diff(t) < 0.4) >= 4 for t in by_key.values())
    assert runs >= 3 and repeats >= 3


def test_sizes_nest_and_the_test_piano_is_unseen():
    small = plan_tracks({**SPEC, "train_hours": 0.005, "piece_seconds": 6, "train_programs": [0, 3]})
    large = plan_tracks({**SPEC, "train_hours": 0.02, "piece_seconds": 6, "train_programs": [0, 3]})
    train = lambda plan: [t for t in plan if t["split"] == "train"]  # noqa: E731
    assert len(train(small)) == 3 and len(train(large)) == 12
    for s, l in zip(train(small), train(large)):
        assert s["track_id"] == l["track_id"] and _notes(s["make"]()) == _notes(l["make"]())
    seen = {t["program"] for t in large if t["split"] in ("train", "validation", "isolated")}
    assert seen == {0, 3} and {t["program"] for t in large if t["split"] == "test"} == {2}
    assert sorted(t["track_id"] for t in large if t["split"] == "isolated") == ["isolated_p000_v090", "isolated_p003_v090"]
    assert n_train_pieces({"n_train": 5}) == 5
    with pytest.raises(LowrankAmtError, match="test_programs"):
        full_spec({"train_programs": [0, 1], "test_programs": [1]})


def _render(tmp_path, name, **changes):
    spec = {**SPEC, "piece_seconds": 2.5, "n_train": 0, "n_validation": 0, "n_test": 1, "isolated_velocities": [],
            "pedal_probability": 1.0, **changes}
    prepare(spec, tmp_path / name / "manifest.csv", 16000, jobs=2, log=lambda m: None)
    return {p.name: p.read_bytes() for p in sorted((tmp_path / name).rglob("*.*")) if p.suffix in (".wav", ".mid")}


def test_same_spec_gives_same_bytes_and_noise_is_at_its_snr(tmp_path):
    first, second = _render(tmp_path, "a"), _render(tmp_path, "b")
    assert first.keys() == second.keys() == {"test_00000.wav", "test_00000.mid"}
    assert first == second
    noisy = _render(tmp_path, "noisy", noise_snr_db=20.0)
    clean = soundfile.read(tmp_path / "a" / "audio" / "test_00000.wav")[0]
    dirty = soundfile.read(tmp_path / "noisy" / "audio" / "test_00000.wav")[0]
    assert noisy == _render(tmp_path, "noisy2", noise_snr_db=20.0)
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((dirty - clean) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)


def test_reverb_switch_adds_a_room_tail(tmp_path):
    _render(tmp_path, "dry")
    _render(tmp_path, "wet", reverb=True)
    dry = soundfile.read(tmp_path / "dry" / "audio" / "test_00000.wav")[0]
    wet = soundfile.read(tmp_path / "wet" / "audio" / "test_00000.wav")[0]
    tail = slice(-len(dry) // 5, None)
    assert not np.array_equal(dry[:len(wet)], wet[:len(dry)])
    assert np.sqrt(np.mean(wet[tail] ** 2)) > 1.5 * np.sqrt(np.mean(dry[tail] ** 2))
