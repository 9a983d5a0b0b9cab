"""Config validation: defaults filled, and every error names its key."""

import copy

import pytest
import yaml

from lowrank_amt.config import load_schema, validate_config
from lowrank_amt.errors import LowrankAmtError


@pytest.fixture
def schema(repo):
    return load_schema(repo / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def default_config(repo):
    return yaml.safe_load((repo / "config/config.yaml").read_text())


def test_default_config_is_valid_and_complete(schema, default_config):
    config = validate_config(copy.deepcopy(default_config), schema)
    assert config["models"]["nmf_sup_kl"]["device"] == "auto"  # filled from the schema


@pytest.mark.parametrize("name", ["tiny", "learning", "pianos", "scaling", "maestro", "multi", "guitar", "slakh",
                                  "guitarset"])
def test_every_study_config_is_valid(repo, schema, name):
    """The other studies' configs (not run by CI) still validate, with their models and
    synthetic timbres accepted by their families."""
    from lowrank_amt import families
    from lowrank_amt.datasets import ensemble, synth
    config = validate_config(yaml.safe_load((repo / f"config/{name}.yaml").read_text()), schema)
    assert config["models"] and config["datasets"]
    for spec in config["models"].values():
        assert families.resolve(spec)[0].name == spec["family"]
    for spec in config["datasets"].values():
        if spec["kind"] in ("synthetic", "ensemble"):
            module = synth if spec["kind"] == "synthetic" else ensemble
            assert len(module.plan_tracks({k: v for k, v in spec.items() if k not in ("kind", "role")})) > 0


def test_omitted_sections_take_schema_defaults(schema):
    config = {"datasets": {"d": {"kind": "synthetic"}}, "features": {"f": {"kind": "cqt"}},
              "models": {"m": {"family": "nmf"}}}
    validate_config(config, schema)
    assert config["study"] == "default"
    assert config["decoding"]["min_note_seconds"] == 0.05
    assert config["datasets"]["d"]["n_test"] == 4
    assert config["models"]["m"]["beta"] == 1
    assert config["features"]["f"]["hop_length"] == 512


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["models"]["nmf_sup_kl"].update(betta=1), "models.nmf_sup_kl.betta"),
    (lambda c: c["models"]["nmf_sup_kl"].update(beta="one"), "models.nmf_sup_kl.beta"),
    (lambda c: c["models"]["nmf_sup_kl"].update(beta=-1), "models.nmf_sup_kl.beta"),
    (lambda c: c["datasets"]["synth_piano"].update(n_test=0), "datasets.synth_piano.n_test"),
    (lambda c: c["features"]["cqt"].update(kind="mfcc"), "features.cqt.kind"),
    (lambda c: c.update(sampel_rate=22050), "sampel_rate"),
    (lambda c: c["decoding"].update(thresholds=[]), "decoding.thresholds"),
])
def test_errors_name_the_key(schema, default_config, edit, key):
    config = copy.deepcopy(default_config)
    edit(config)
    with pytest.raises(LowrankAmtError) as error:
        validate_config(config, schema)
    assert f"'{key}'" in str(error.value)


def test_empty_model_table_is_refused(schema, default_config):
    config = copy.deepcopy(default_config)
    config["models"] = {}
    with pytest.raises(LowrankAmtError, match="'models'"):
        validate_config(config, schema)


@pytest.mark.parametrize("overlay, added", [
    ("scaling-long", {"unrolled_nmfd_gains_long"}),
    ("hybrid-parts", {"unrolled_nmfd_gains_long", "unrolled_nmfd_aug", "unrolled_nmfd_untied", "unrolled_nmfd_adapt"})])
def test_the_scaling_overlays_add_models_to_the_scaling_study(repo, schema, overlay, added):
    """An overlay given after config/scaling.yaml (Snakemake merges mappings key by key)
    adds its models and keeps the study's."""
    from snakemake.utils import update_config
    from lowrank_amt import families
    config = yaml.safe_load((repo / "config/scaling.yaml").read_text())
    study_models, study_thresholds = set(config["models"]), config["decoding"]["thresholds"]
    update_config(config, yaml.safe_load((repo / f"config/{overlay}.yaml").read_text()))
    config = validate_config(config, schema)
    assert set(config["models"]) == study_models | added and config["decoding"]["thresholds"] == study_thresholds
    assert families.resolve(config["models"]["unrolled_nmfd_gains_long"])[1]["learn_bin_gains"]
    for name in added:
        assert not families.resolve(config["models"][name])[0].skip(families.resolve(config["models"][name])[1])[0]


def test_the_long_onsets_and_frames_overlay_keeps_the_study_s_network_but_its_budget(repo, schema):
    """config/onsets-frames-long.yaml (make onsets-frames-long) adds Onsets and Frames as the
    scaling study has it, with four times the epochs and a longer patience."""
    from snakemake.utils import update_config
    config = yaml.safe_load((repo / "config/scaling.yaml").read_text())
    update_config(config, yaml.safe_load((repo / "config/onsets-frames-long.yaml").read_text()))
    models = validate_config(config, schema)["models"]
    study, long = models["onsets_frames"], models["onsets_frames_long"]
    assert {k: v for k, v in long.items() if k not in ("epochs", "patience")} == \
        {k: v for k, v in study.items() if k not in ("epochs", "patience")}
    assert long["epochs"] == 4 * study["epochs"] and long["patience"] > study["patience"]


def test_the_class_heads_overlay_is_the_multi_study_s_hybrid_with_a_class_loss(repo, schema):
    """config/multi-class-heads.yaml (make multi-class-heads) adds the multi study's hybrid
    with the class loss at two weights and nothing else changed, so that they compare."""
    from snakemake.utils import update_config
    config = yaml.safe_load((repo / "config/multi.yaml").read_text())
    update_config(config, yaml.safe_load((repo / "config/multi-class-heads.yaml").read_text()))
    models = validate_config(config, schema)["models"]
    study = models["unrolled_nmfd_inst"]

    def others(spec):
        return {k: v for k, v in spec.items() if k != "class_loss_weight"}
    for name in ("unrolled_nmfd_inst_classes", "unrolled_nmfd_inst_classes_4"):
        assert others(models[name]) == others(study) and models[name]["class_loss_weight"] > 0
    assert study["class_loss_weight"] == 0
