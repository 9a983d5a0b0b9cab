"""config/README.md documents every key of the config schema.

A key added to workflow/schemas/config.schema.yaml without a line in the README (its
name in backticks) fails here.
"""

import pytest
import yaml
from lowrank_amt.config import load_schema


def schema_keys(schema: dict) -> set[str]:
    """Names of the top-level properties and of every property of each definition."""
    keys = set(schema.get("properties", {}))
    for definition in schema.get("definitions", {}).values():
        keys |= set(definition.get("properties", {}))
    return keys


@pytest.fixture
def schema(repo):
    return load_schema(repo / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def readme(repo):
    return (repo / "config" / "README.md").read_text()


def test_schema_walk_finds_the_keys(schema):
    keys = schema_keys(schema)
    # Guards the walk itself: a restructured schema must not make the test vacuous.
    assert {"study", "datasets", "models", "kind", "family", "beta", "thresholds", "onset_tolerance"} <= keys


def test_every_schema_key_is_documented(schema, readme):
    missing = sorted(key for key in schema_keys(schema) if f"`{key}`" not in readme)
    assert not missing, f"config/README.md does not document (in backticks): {missing}"


def test_every_schema_property_has_a_description(schema):
    """The README is written from the descriptions; each key should have one."""
    undocumented = []
    for name, prop in schema["properties"].items():
        if "description" not in prop and "$ref" not in prop:
            undocumented.append(name)
    for def_name, definition in schema.get("definitions", {}).items():
        for name, prop in definition.get("properties", {}).items():
            if "description" not in prop:
                undocumented.append(f"{def_name}.{name}")
    assert not undocumented, f"schema properties without a description: {undocumented}"


def test_generated_reference_is_up_to_date(schema, readme):
    from lowrank_amt.report.config_docs import embed_reference
    assert embed_reference(readme, schema) == readme, (
        "config/README.md is out of date: run `lowrank-amt config-docs --schema "
        "workflow/schemas/config.schema.yaml --readme config/README.md`")


def test_a_key_added_to_a_dataset_kind_needs_no_schema_or_docs_edit(repo, monkeypatch):
    """The schema's dataset part and its README tables come from the dataset modules'
    tables: a key added to one (one line) is documented, filled in and checked."""
    from lowrank_amt.config import validate_config
    from lowrank_amt.report.config_docs import schema_reference
    from lowrank_amt.datasets import folder, options
    from lowrank_amt.errors import LowrankAmtError
    from lowrank_amt.param import Param
    monkeypatch.setattr(folder, "PARAMS", (*folder.PARAMS, Param("gain_db", 0.0, type="number", maximum=0,
                                                                    meaning="Gain applied on loading.")))
    path = repo / "workflow/schemas/config.schema.yaml"
    assert "| `gain_db` | number | `0.0` | <= 0 | Gain applied on loading. |" in schema_reference(load_schema(path))
    assert options(folder.PARAMS, {"kind": "folder", "path": "x"})["gain_db"] == 0.0
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    config["datasets"]["own"] = {"kind": "folder", "path": "x", "gain_db": 3}
    with pytest.raises(LowrankAmtError, match="datasets.own.gain_db"):
        validate_config(config, load_schema(path))
    with pytest.raises(LowrankAmtError, match="'datasets.<name>.gain_db': 3 is greater than the maximum of 0"):
        options(folder.PARAMS, {"kind": "folder", "path": "x", "gain_db": 3})


@pytest.mark.parametrize("module, section, key", [("decoding.tuning", "decoding", "offset_holds"),
                                                  ("evaluation.registry", "evaluation", "frame_hop")])
def test_a_decoding_or_evaluation_key_is_declared_once(repo, monkeypatch, module, section, key):
    """The schema's decoding and evaluation sections come from their modules' tables: a key
    added to one (one line) is documented, filled in as a default and checked."""
    import importlib
    from lowrank_amt.config import validate_config
    from lowrank_amt.errors import LowrankAmtError
    from lowrank_amt.param import Param
    from lowrank_amt.report.config_docs import schema_reference
    table = importlib.import_module(f"lowrank_amt.{module}")
    monkeypatch.setattr(table, "PARAMS", (*table.PARAMS, Param(key, 0.1, type="number", exclusiveMinimum=0,
                                                                  meaning="A key of a test.")))
    path = repo / "workflow/schemas/config.schema.yaml"
    assert f"| `{key}` | number | `0.1` | > 0 | A key of a test. |" in schema_reference(load_schema(path))
    config = yaml.safe_load((repo / "config/tiny.yaml").read_text())
    assert validate_config(config, load_schema(path))[section][key] == 0.1
    config[section] = {key: 0}
    with pytest.raises(LowrankAmtError, match=f"{section}.{key}"):
        validate_config(config, load_schema(path))


def test_the_decoding_grid_reads_every_key_of_its_table():
    from lowrank_amt.decoding import tuning
    assert set(tuning.GRID_KEYS) == {p.name for p in tuning.PARAMS}
