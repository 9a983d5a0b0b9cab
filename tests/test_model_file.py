"""A trained model is a portable folder: model.npz holds the family, spec, feature
parameters and provenance, the decode stage adds its decoding parameters, and a model
meets only the features it was trained on."""

import json

import numpy as np
import pytest


from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.runtime.io import read_json
from lowrank_amt.model_file import load_model
from lowrank_amt.stages import train as training, transcribe as transcription

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = dict(log=lambda m: None)
DECODING = {"thresholds": [0.1, 0.2], "min_note_seconds": 0.05}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}


@pytest.fixture
def trained(lowrank_cache, small_spec, tmp_path):
    folder, _ = lowrank_cache
    out = tmp_path / "models" / "run"
    spec = {**small_spec, "family": "nmf", "supervision": "supervised"}
    training.train(spec, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json",
                   provenance={"dataset": "planted", "config_hash": "abc"}, **QUIET)
    return folder, out


def test_the_model_folder_holds_what_transcription_needs(trained, tmp_path):
    folder, out = trained
    model = load_model(out)  # the folder, or its model.npz
    assert model.family.name == "nmf" and model.spec["supervision"] == "supervised"
    assert model.features == read_json(folder / "params.json")
    assert model.provenance["dataset"] == "planted" and model.provenance["config_hash"] == "abc"
    assert model.provenance["versions"]["torch"] and model.provenance["train_hours"] is None
    assert set(model.arrays) == {"W", "template_keys"} and model.decoding is None
    transcription.activations(out, folder / "index.csv", tmp_path / "a.npz", tmp_path / "a.json", **QUIET)
    transcription.decode(out, tmp_path / "a.npz", folder / "index.csv", DECODING, EVALUATION, tmp_path / "midi",
                         out / "decoding.json", **QUIET)
    assert load_model(out / "model.npz").decoding == read_json(out / "decoding.json")["params"]


def test_a_model_meets_only_its_own_features(trained, tmp_path):
    folder, out = trained
    other = tmp_path / "other"
    other.mkdir()
    for path in folder.iterdir():
        if path.is_file():
            (other / path.name).write_bytes(path.read_bytes())
    params = json.loads((other / "params.json").read_text())
    (other / "params.json").write_text(json.dumps({**params, "bins_per_semitone": 2}))
    with pytest.raises(LowrankAmtError, match=r"model .*model.npz was trained on features with other "
                                              r"parameters than .*other \(differ: bins_per_semitone\)"):
        transcription.activations(out, other / "index.csv", tmp_path / "a.npz", tmp_path / "a.json", **QUIET)
    assert not (tmp_path / "a.npz").exists()


def test_the_arrays_are_plain_numpy(trained):
    _, out = trained
    with np.load(out / "model.npz", allow_pickle=False) as data:  # readable without this package
        assert json.loads(str(data["spec"]))["family"] == "nmf" and data["W"].ndim == 2
