"""The synthetic dataset: deterministic MIDI, real polyphony, real rendered audio."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from lowrank_amt.data.manifest import read_manifest
from lowrank_amt.data.synth import find_soundfont, isolated_notes, prepare, random_piece
from lowrank_amt.errors import LowrankAmtError

SPEC = {"kind": "synthetic", "seed": 3, "n_train": 1, "n_validation": 1, "n_test": 1,
        "piece_seconds": 3, "max_polyphony": 4, "pitch_range": [36, 96], "program": 0,
        "soundfont": "auto", "isolated_velocities": [90]}


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
    for row in table.itertuples():
        audio, rate = soundfile.read(row.audio_path)
        assert rate == 16000
        assert row.duration == pytest.approx(len(audio) / rate, abs=1e-3)
        assert np.abs(audio).max() > 0.01  # a real, audible rendering
    isolated = table[table["split"] == "isolated"].iloc[0]
    assert isolated.duration > 88 * 1.5


def test_missing_soundfont_is_named(tmp_path):
    with pytest.raises(LowrankAmtError, match="nowhere.sf2"):
        find_soundfont(str(tmp_path / "nowhere.sf2"))
    with pytest.raises(LowrankAmtError, match="nowhere.sf2"):
        prepare({**SPEC, "soundfont": str(tmp_path / "nowhere.sf2")},
                          tmp_path / "d" / "manifest.csv", 16000, log=lambda m: None)
    assert not (tmp_path / "d" / "manifest.csv").exists()


def test_manifest_with_missing_columns_is_refused(tmp_path):
    pd.DataFrame({"track_id": ["a"], "split": ["test"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(LowrankAmtError, match="audio_path"):
        read_manifest(tmp_path / "m.csv")
