"""The shipped model's folder and the ``ship`` step's refusals (the model itself is
tested end to end in test_workflow.py)."""

from pathlib import Path

import numpy as np
import pytest

from lowrank_amt import shipped
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.runtime.io import read_json, write_json
from lowrank_amt.model_file import save_model

REPO = Path(__file__).resolve().parents[1]
CONFIG, SCHEMA = REPO / "config/pianos.yaml", REPO / "workflow/schemas/config.schema.yaml"
NAMES = {"study": "pianos", "dataset": "synth_pianos", "features": "cqt", "model": "nmf_sup_kl", "size": "isolated"}


def a_model(folder, config_hash, decoding=True, validation_f=0.5):
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "model.npz", "nmf", {"family": "nmf"}, {"W": np.ones((4, 2), np.float32)},
               provenance={**NAMES, "config_hash": config_hash})
    if decoding:
        write_json(folder / "decoding.json", {"params": {"threshold": 0.1}, "validation_note_onset_f": validation_f})
    return folder


def test_ship_picks_the_candidate_validation_prefers_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "FOLDER", tmp_path / "shipped")
    right = shipped.recorded_hash(CONFIG, SCHEMA, NAMES)
    candidates = [a_model(tmp_path / size, right, validation_f=f) for size, f in (("0.3h", 0.71), ("1h", 0.69))]
    target = shipped.ship(candidates, "piano", CONFIG, SCHEMA, log=lambda m: None)
    provenance = read_json(target / "provenance.json")
    assert provenance["validation_note_onset_f"] == 0.71 and provenance["picked_by"] == "validation note F (onset)"
    assert provenance["candidates"] == {str(tmp_path / "0.3h"): 0.71, str(tmp_path / "1h"): 0.69}


def test_ship_refuses_a_model_of_another_config_or_without_its_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "FOLDER", tmp_path / "shipped")
    right = shipped.recorded_hash(CONFIG, SCHEMA, NAMES)
    with pytest.raises(LowrankAmtError, match="trained from another config"):
        shipped.ship(a_model(tmp_path, "0123456789ab"), "piano", CONFIG, SCHEMA, log=lambda m: None)
    (tmp_path / "decoding.json").unlink()
    with pytest.raises(LowrankAmtError, match="no decoding.json"):
        shipped.ship(a_model(tmp_path, right, decoding=False), "piano", CONFIG, SCHEMA, log=lambda m: None)
    assert not (tmp_path / "shipped").exists()  # nothing written
    target = shipped.ship(a_model(tmp_path, right), "piano", CONFIG, SCHEMA, log=lambda m: None)
    assert {p.name for p in target.iterdir()} == {"model.npz", "decoding.json", "provenance.json"}


def test_a_missing_shipped_model_is_one_line_naming_its_make_target(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "FOLDER", tmp_path)
    with pytest.raises(LowrankAmtError, match="make ship-piano"):
        shipped.folder("piano")
