"""A track's outputs type (decoding/outputs.py): an activations file holds every output a
family gives and reads it back as it was (to float16), a missing track is one line naming
the file, and the one notes writer gives the MIDI and CSV that read back to its notes."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.decoding import outputs
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.notes import read_midi, read_midi_notes
from lowrank_amt.instruments import CLASSES, read_class_notes

NOTES = (np.array([[0.5, 1.0], [0.25, 2.0]]), np.array([60, 64]), np.array([80, 40]))


def every_output(frames=7):
    rng = np.random.default_rng(0)
    note = rng.random((88, frames)).astype(np.float32)
    note[0, 0] = 1e6  # beyond float16's range: clipped, not infinite
    return {"note": note, "onset": rng.random((88, frames)), "pedal": rng.random((1, frames)),
            "by_class": rng.random((2, 88, frames)), "classes": np.array([0, 3])}


def test_an_activations_file_reads_back_every_output(tmp_path):
    given = every_output()
    np.savez_compressed(tmp_path / "a.npz", frame_rate=np.float64(31.25), **outputs.pack(given, "test", "t1"))
    read = outputs.unpack(np.load(tmp_path / "a.npz"), "test", "t1", tmp_path / "a.npz")
    assert list(read) == list(outputs.NAMES) == ["note", "onset", "pedal", "by_class", "classes"]
    assert read["note"][0, 0] == np.finfo(np.float16).max and read["note"].dtype == np.float32
    for name in ("onset", "pedal", "by_class"):
        assert read[name].shape == np.shape(given[name])
        np.testing.assert_array_equal(read[name], np.asarray(given[name], dtype=np.float16).astype(np.float32))
    assert read["classes"].dtype == np.int64 and read["classes"].tolist() == [0, 3]
    only_note = outputs.unpack(outputs.pack({"note": given["note"]}, "test", "t2"), "test", "t2", "x")
    assert list(only_note) == ["note"]


def test_a_track_the_file_lacks_is_one_line_naming_both(tmp_path):
    arrays = outputs.pack(every_output(), "test", "t1")
    with pytest.raises(LowrankAmtError, match=r"act.npz lacks activations of validation track t1"):
        outputs.unpack(arrays, "validation", "t1", tmp_path / "act.npz")
    with pytest.raises(LowrankAmtError, match=r"expected \(88, frames\)"):
        outputs.unpack({"test__t1": np.zeros(5)}, "test", "t1", "act.npz")


def test_the_notes_writer_gives_midi_and_csv_that_read_back_to_its_notes(tmp_path):
    outputs.write_notes(tmp_path / "x.mid", NOTES, pedal=np.array([[0.0, 0.8]]), csv_path=tmp_path / "x.csv")
    intervals, pitches, velocities = read_midi_notes(tmp_path / "x.mid")
    np.testing.assert_allclose(intervals, [[0.25, 2.0], [0.5, 1.0]], atol=1e-3)  # sorted by onset
    assert pitches.tolist() == [64, 60] and velocities.tolist() == [40, 80]
    assert [c.number for c in read_midi(tmp_path / "x.mid").instruments[0].control_changes] == [64, 64]
    table = pd.read_csv(tmp_path / "x.csv")
    assert table.columns.tolist() == ["onset_s", "offset_s", "pitch", "velocity"] and len(table) == 2
    # by class: one named track each, and an instrument column sorted by onset
    by_class = {CLASSES[0]: NOTES, CLASSES[3]: (np.array([[0.1, 0.3]]), np.array([40]), np.array([90]))}
    outputs.write_notes(tmp_path / "y.mid", by_class=by_class, csv_path=tmp_path / "y.csv")
    read = read_class_notes(tmp_path / "y.mid")
    assert sorted(read) == sorted(by_class) and read[CLASSES[3]][1].tolist() == [40]
    assert pd.read_csv(tmp_path / "y.csv")["instrument"].tolist() == [CLASSES[3], CLASSES[0], CLASSES[0]]
    outputs.write_notes(tmp_path / "z.mid", NOTES)  # the stage's call: MIDI alone
    assert not (tmp_path / "z.csv").exists()
