"""Models that ship inside the package, so that ``lowrank-amt transcribe --model NAME``
works straight after the set-up, without a study.

Each is a model folder as a study writes it (``model.npz``, ``decoding.json``) under
``shipped_models/NAME/``, with ``provenance.json``: the study config it was trained from
and the hash of the entries the model depends on (``config.model_config_hash``), the
commit, the training data, the run's date and machine, and the command that retrains it
(``make ship-piano``: the study's own rules, then ``lowrank-amt ship``). A test holds the
recorded hash equal to the committed config's, so a change to the config that would train
another model fails until the model is retrained.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

from .config import load_schema, model_config_hash, read_yaml, validate_config
from .errors import LowrankAmtError
from .model_file import DECODING_FILE, MODEL_FILE, load_model
from .runtime.io import read_json, write_json

#: name -> what it is; its folder is ``shipped_models/<name>/``.
SHIPPED = {"piano": "the pianos study's convolutive hybrid (config/pianos.yaml: unrolled_nmfd) at the training size "
                    "validation note F picks"}
FOLDER = Path(__file__).parent / "shipped_models"
#: The largest model file a wheel should carry (bytes).
MAX_BYTES = 2_000_000


def names() -> list[str]:
    return sorted(SHIPPED)


def folder(name: str) -> Path:
    """The folder of a shipped model, or one error naming the missing file."""
    path = FOLDER / name
    if not (path / MODEL_FILE).exists():
        raise LowrankAmtError(f"shipped model {name!r} is missing from {path}: `make ship-{name}` trains it")
    return path


def recorded_hash(config_path, schema_path, provenance: dict) -> str:
    """The hash the config at ``config_path`` gives the model a provenance names."""
    config = read_yaml(config_path)
    written = copy.deepcopy(config.get("models") or {})
    validate_config(config, load_schema(schema_path))
    return model_config_hash(config, written, provenance["dataset"], provenance["features"], provenance["model"])


def validation_pick(model_dirs) -> tuple[Path, dict]:
    """The candidate model folder whose decoding.json has the highest validation note F
    (onset), and every candidate's figure; the test split never enters the choice."""
    scores = {}
    for folder in map(Path, model_dirs):
        if not (folder / DECODING_FILE).exists():
            raise LowrankAmtError(f"{folder} has no {DECODING_FILE}: run the study's decode stage first")
        score = read_json(folder / DECODING_FILE).get("validation_note_onset_f")
        if score is None:
            raise LowrankAmtError(f"{folder / DECODING_FILE} has no validation_note_onset_f: decode it again")
        scores[str(folder)] = float(score)
    best = max(scores, key=scores.get)
    return Path(best), scores


def ship(model_dirs, name: str, config_path, schema_path, log=print) -> Path:
    """Copy the candidate model folder of a study that validation note F picks
    (``validation_pick``) into ``shipped_models/<name>/`` with its provenance.json;
    refuses a model whose config hash the config does not give, one without
    decoding.json, or a file over ``MAX_BYTES``."""
    source, scores = validation_pick([model_dirs] if isinstance(model_dirs, (str, Path)) else model_dirs)
    model = load_model(source)
    size = (source / MODEL_FILE).stat().st_size
    if size > MAX_BYTES:
        raise LowrankAmtError(f"{source / MODEL_FILE} is {size} bytes, over the {MAX_BYTES} a shipped model may be")
    expected = recorded_hash(config_path, schema_path, model.provenance)
    if model.provenance.get("config_hash") != expected:
        raise LowrankAmtError(f"{source} was trained from another config than {config_path} "
                              f"(hash {model.provenance.get('config_hash')}, the config gives {expected})")
    config = read_yaml(config_path)
    target = FOLDER / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / MODEL_FILE, target / MODEL_FILE)
    # the decoder's parameters and validation figure; the grid's trials stay in the study
    decoding = read_json(source / DECODING_FILE)
    write_json(target / DECODING_FILE, {k: v for k, v in decoding.items() if k != "validation_trials"})
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    train_info = read_json(source / "train.json") if (source / "train.json").exists() else {}
    write_json(target / "provenance.json", {
        "name": name, "what": SHIPPED.get(name, ""), "config": str(config_path),
        "config_hash": expected, "study": model.provenance.get("study"), "model": model.provenance["model"],
        "size": model.provenance.get("size"), "dataset": model.provenance["dataset"],
        "data": config["datasets"][model.provenance["dataset"]], "shipped_by_commit": commit,
        "train_hours": model.provenance.get("train_hours"), "train_seconds": train_info.get("train_seconds"),
        "trained": train_info.get("run", {}), "retrain": f"make ship-{name}",
        "picked_by": "validation note F (onset)", "validation_note_onset_f": scores[str(source)],
        "candidates": scores})
    log(f"shipped {source} as {name!r} in {target} ({size} bytes; validation note F {scores[str(source)]:.3f}, "
        f"best of {len(scores)})")
    return target
