"""A teacher's transcription as training targets (``stages/train.py``): the targets are the
roll of the teacher's decoded notes, where its output holds above its decoding
threshold; a semi-supervised model learns from them without reading the training MIDI;
a teacher without a decoding chosen on validation is refused."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.signal.feature_cache import read_index
from lowrank_amt.runtime.io import read_json
from lowrank_amt.model_file import load_model
from lowrank_amt.stages.train import teach
from lowrank_amt.stages import evaluate as evaluation, train as training, transcribe as transcription

EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}
DECODING = {"thresholds": [0.1, 0.2, 0.3], "onsets": ["threshold"], "offset_fractions": [0.1],
            "min_note_seconds": 0.05}
QUIET = lambda message: None  # noqa: E731

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def taught(cache_builder, tmp_path, monkeypatch):
    """A planted cache, a supervised NMF teacher decoded on its validation split, and
    the index that teach() writes from it, all given by relative paths (as the workflow's)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cache").mkdir()
    folder, _ = cache_builder(tmp_path / "cache", (("train", 2), ("validation", 1), ("test", 1)), 30, 0.3, 0.25)
    (folder / "params.json").write_text(json.dumps({"kind": "cqt", "sample_rate": 22050, "hop_length": 512,
                                                    "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}))
    index, model = folder / "index.csv", tmp_path / "teacher"
    training.train({"family": "nmf", "train_iterations": 30, "transcribe_iterations": 30, "device": "cpu"}, index,
                   model / "model.npz", model / "loss.csv", model / "train.json", log=QUIET)
    transcription.activations(model / "model.npz", index, model / "a.npz", model / "a.json", log=QUIET)
    transcription.decode(model / "model.npz", model / "a.npz", index, DECODING, EVALUATION, model / "midi",
                         model / "decoding.json", log=QUIET)
    out = Path("taught") / "index.csv"
    info = teach(model / "model.npz", Path("cache") / "index.csv", out, tmp_path / "taught" / "teach.json", log=QUIET)
    return index, model, tmp_path / out, info


def test_targets_are_where_the_teachers_output_holds_above_its_threshold(taught):
    index, model, out, info = taught
    threshold = read_json(model / "decoding.json")["params"]["threshold"]
    teacher = load_model(model / "model.npz")
    original, new = read_index(index, "train"), read_index(out, "train")
    assert len(new) == info["n_tracks"] == 2 and info["n_notes"] > 0
    for old_row, row in zip(original.itertuples(), new.itertuples()):
        assert row.roll_path != old_row.roll_path and row.features_path == old_row.features_path
        roll = np.load(row.roll_path).astype(bool)
        H = teacher.family.transcriber(teacher.arrays, teacher.spec, "cpu")(np.load(row.features_path))["note"]
        above = H / H.max() >= threshold
        agree = (roll & above).sum()
        assert agree / roll.sum() > 0.95 and agree / above.sum() > 0.9
    # the rest of the index is untouched, and the teacher's rolls agree with the MIDI's
    pd.testing.assert_frame_equal(read_index(out, "test"), read_index(index, "test"))
    assert info["frame_f_vs_midi"] > 0.9


def test_a_semi_supervised_model_learns_from_the_teacher_without_the_training_midi(taught, tmp_path):
    index, _, out, _ = taught
    for row in read_index(index, "train").itertuples():  # the MIDI's rolls, silenced: unused
        np.save(row.roll_path, np.zeros_like(np.load(row.roll_path)))
    student = tmp_path / "student"
    spec = {"family": "nmf", "supervision": "semi_supervised", "train_iterations": 40, "transcribe_iterations": 30,
            "device": "cpu", "teacher": "a_teacher"}
    training.train(spec, out, student / "model.npz", student / "loss.csv", student / "train.json", log=QUIET)
    assert read_json(student / "train.json")["n_templates_with_key"] > 25  # the silenced rolls would leave none
    transcription.activations(student / "model.npz", index, student / "a.npz", student / "a.json", log=QUIET)
    transcription.decode(student / "model.npz", student / "a.npz", index, DECODING, EVALUATION, student / "midi",
                         student / "decoding.json", log=QUIET)
    scores = evaluation.evaluate(student / "midi", index, EVALUATION, student / "per_track.csv", log=QUIET)
    assert scores["note_onset_f"].mean() > 0.8


def test_a_teacher_without_its_decoding_is_refused(taught, tmp_path):
    index, model, _, _ = taught
    (model / "decoding.json").unlink()
    with pytest.raises(LowrankAmtError, match="has no decoding.json"):
        teach(model / "model.npz", index, tmp_path / "t" / "index.csv", tmp_path / "t" / "teach.json", log=QUIET)
    assert not (tmp_path / "t" / "index.csv").exists()


def test_recordings_without_midi_train_only_a_model_with_a_teacher(taught, tmp_path):
    index, model, _, _ = taught
    table = pd.read_csv(index)
    table["annotated"] = table["split"] != "train"  # as extract-features marks recordings without MIDI
    table.to_csv(index, index=False)
    semi = {"family": "nmf", "supervision": "semi_supervised", "train_iterations": 5, "device": "cpu"}
    with pytest.raises(LowrankAmtError, match="training track train_0 of .* has no MIDI: name a model"):
        training.train(semi, index, tmp_path / "m.npz", tmp_path / "l.csv", tmp_path / "t.json", log=QUIET)
    assert not (tmp_path / "m.npz").exists()
    unsupervised = {**semi, "supervision": "unsupervised", "rank": 10}  # reads no targets: allowed
    training.train(unsupervised, index, tmp_path / "u.npz", tmp_path / "u.csv", tmp_path / "u.json", log=QUIET)
    out = tmp_path / "taught2" / "index.csv"
    info = teach(model / "model.npz", index, out, tmp_path / "taught2" / "teach.json", log=QUIET)
    assert "frame_f_vs_midi" not in info  # no MIDI to compare with
    training.train({**semi, "teacher": "t"}, out, tmp_path / "m.npz", tmp_path / "l.csv", tmp_path / "t.json", log=QUIET)
