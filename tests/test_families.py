"""The family contract: the registry and the config schema agree, and a new family
defined in this file alone (NMF with an L2 penalty on W) runs through every stage
(train, activations, decode, evaluate, interpretability) without any package module
edited."""

import numpy as np
import pandas as pd
import pytest
import yaml
from lowrank_amt.config import load_schema

from lowrank_amt import families
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.factorization import nmf
from lowrank_amt.families.lowrank import NMF
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.stages import evaluate as evaluation, train as training, transcribe as transcription

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUIET = dict(log=lambda m: None)
DECODING = {"thresholds": [0.05, 0.1, 0.2, 0.3], "min_note_seconds": 0.05}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}


@pytest.fixture
def schema(repo):
    return load_schema(repo / "workflow" / "schemas" / "config.schema.yaml")


def test_the_schema_lists_exactly_the_registered_families(schema):
    assert schema["definitions"]["model"]["properties"]["family"]["enum"] == families.names()
    routed = {}  # family -> the definition the schema's if/then sends its specs to
    for branch in schema["definitions"]["model"]["allOf"]:
        condition = branch["if"]["properties"]["family"]
        for name in condition.get("enum", [condition.get("const")]):
            routed[name] = branch["then"]["$ref"].rsplit("/", 1)[-1]
    assert routed == {name: families.get(name).schema_definition for name in families.names()}


@pytest.mark.parametrize("name", families.names())
def test_schema_keys_defaults_and_choices_are_the_familys(schema, name):
    family = families.get(name)
    properties = schema["definitions"][family.schema_definition]["properties"]
    assert set(properties) - {"family"} == set(family.defaults)
    assert {k: p["default"] for k, p in properties.items() if k != "family"} == family.defaults
    for key, allowed in family.choices.items():
        assert tuple(properties[key]["enum"]) == tuple(allowed), key


class PenalizedNumerics:
    """NMF's numerics with a penalty (penalty / 2) ||W||^2 on the dictionary: its MU adds
    ``penalty * W`` to the denominator of W's update; every other function is NMF's."""

    penalty = 0.5

    def __getattr__(self, name):
        return getattr(nmf, name)

    def dictionary_terms(self, V, W, activations, beta, V_hat=None, mask=None):
        numerator, denominator = nmf.dictionary_terms(V, W, activations, beta, V_hat=V_hat, mask=mask)
        return numerator, denominator + self.penalty * W


class PenalizedNMF(NMF):
    """NMF on the penalized numerics. The penalty acts through MU, so the gradient form is
    refused."""

    name = "nmf_l2"
    description = "NMF with an L2 penalty on W (a test's toy family)"
    numerics = PenalizedNumerics()

    def skip(self, spec):
        if spec["form"] == "gradient":
            return True, "family 'nmf_l2' applies its penalty through MU: form 'gradient' is refused"
        return super().skip(spec)


@pytest.fixture
def penalized():
    family = families.register(PenalizedNMF())
    yield family
    families._LOADED.pop(family.name)


def run_stages(folder, out, spec):
    index = folder / "index.csv"
    training.train(spec, index, out / "model.npz", out / "loss.csv", out / "train.json", checkpoint_dir=out / "ck",
                   **QUIET)
    transcription.activations(out / "model.npz", index, out / "activations.npz", out / "activations.json", **QUIET)
    transcription.decode(out / "model.npz", out / "activations.npz", index, DECODING, EVALUATION, out / "midi",
                         out / "decoding.json", **QUIET)
    scores = evaluation.assess(out / "model.npz", index, out / "interpretability.json",
                               out / "templates.csv", **QUIET)
    return evaluation.evaluate(out / "midi", index, EVALUATION, out / "per_track.csv", **QUIET), scores


@pytest.mark.parametrize("form", ["full_batch", "online_mu"])
def test_a_family_defined_in_a_test_runs_through_every_stage(penalized, lowrank_cache, small_spec, tmp_path,
                                                              random_piece, form):
    folder, _ = lowrank_cache
    spec = {**small_spec, "family": "nmf_l2", "supervision": "semi_supervised", "form": form,
            "train_iterations": 100, "epochs": 4}
    table, scores = run_stages(folder, tmp_path / "toy", spec)
    plain, _ = run_stages(folder, tmp_path / "plain", {**spec, "family": "nmf"})
    # the penalty is in the training: the dictionaries differ from plain NMF's
    W_toy, W_plain = (np.load(tmp_path / run / "model.npz")["W"] for run in ("toy", "plain"))
    assert W_toy.shape == W_plain.shape and not np.allclose(W_toy, W_plain, rtol=1e-3)
    # and it transcribes: far above random notes scored in the same test, and readable
    rng = np.random.default_rng(0)
    index = pd.read_csv(folder / "index.csv")
    random_f = [note_metrics(*read_midi_notes(row.midi_path)[:2], *random_piece(rng, 8, 30))["note_onset_f"]
                for row in index[index["split"] == "test"].itertuples()]
    assert table["note_onset_f"].mean() > np.mean(random_f) + 0.3
    # interpretability reads its dictionary: every template, each labelled with its key
    assert scores["n_templates"] == W_toy.shape[-1] and 0 < scores["interpretability"] <= 1
    if form == "full_batch":  # 100 MU iterations on every frame: the played keys' templates are clean
        assert scores["interpretability"] > 0.8 and scores["label_agreement"] == 1.0
    assert "nmf_l2" in families.names()


def test_a_new_family_refuses_what_its_skip_refuses(penalized, lowrank_cache, small_spec, tmp_path):
    folder, _ = lowrank_cache
    spec = {**small_spec, "family": "nmf_l2", "supervision": "unsupervised", "form": "gradient"}
    with pytest.raises(LowrankAmtError, match="form 'gradient' is refused"):
        training.train(spec, folder / "index.csv", tmp_path / "m.npz", tmp_path / "l.csv", tmp_path / "t.json",
                       **QUIET)
    assert not (tmp_path / "m.npz").exists()


def test_a_new_family_and_a_new_key_need_no_schema_or_docs_edit(penalized, repo):
    """The schema's model part and config/README.md come from the families' tables: the
    toy family validates in a config, and a key added to its table (one line) is
    documented, filled in and checked."""
    from lowrank_amt.config import validate_config
    from lowrank_amt.report.config_docs import schema_reference
    from lowrank_amt.param import Param
    path = repo / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["models"]["toy"] = {"family": "nmf_l2", "supervision": "semi_supervised"}
    validate_config(config, load_schema(path))
    penalized.params = (*penalized.params, Param("penalty", 0.5, type="number", minimum=0, meaning="L2 weight on W."))
    assert "| `penalty` | number | `0.5` | >= 0 | L2 weight on W. |" in schema_reference(load_schema(path))
    assert families.resolve({"family": "nmf_l2"})[1]["penalty"] == 0.5
    with pytest.raises(LowrankAmtError, match="model key 'penalty': -1 is less than the minimum of 0"):
        families.resolve({"family": "nmf_l2", "penalty": -1})
    config["models"]["toy"]["penalty"] = -1
    with pytest.raises(LowrankAmtError, match="models.toy.penalty"):
        validate_config(config, load_schema(path))


def test_a_model_file_of_another_kind_is_named(tmp_path, lowrank_cache):
    folder, _ = lowrank_cache
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(LowrankAmtError, match="other.npz is not a lowrank-amt model"):
        transcription.activations(tmp_path / "other.npz", folder / "index.csv", tmp_path / "a.npz", tmp_path / "a.json",
                                  **QUIET)
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(LowrankAmtError, match="broken.npz is truncated or corrupt"):
        transcription.activations(tmp_path / "broken.npz", folder / "index.csv", tmp_path / "a.npz", tmp_path / "a.json",
                                  **QUIET)


def test_no_family_name_or_flag_is_tested_outside_the_families(repo):
    """Callers ask a family (reads_features, input_of, frame_grid, is_pretrained,
    memory_grows_with_data, cpu_tolerance, score_threshold); only families/ names them."""
    import re
    names = "|".join(map(re.escape, families.names()))
    tested = re.compile(rf"""(["'])({names})\1|\.reads\b|["']full_batch["']|\[["']form["']\]\s*==""")
    package = repo / "src" / "lowrank_amt"
    files = [p for p in package.rglob("*.py") if "families" not in p.relative_to(package).parts]
    files += [*(repo / "workflow").rglob("*.smk"), repo / "Snakefile"]
    found = [f"{p.relative_to(repo)}:{n}: {line.strip()}" for p in files
             for n, line in enumerate(p.read_text().splitlines(), 1) if tested.search(line)]
    assert len(files) > 30 and not found, found
