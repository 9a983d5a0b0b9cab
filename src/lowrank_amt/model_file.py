"""A trained model on disk, the same for every family: a folder (``models/<run>/`` in a
study) holding ``model.npz`` and, once the decode stage has chosen them on the
validation split, the decoding parameters (``decoding.json``). Everything needed to
transcribe new audio travels with it:

* ``model.npz``: the family's name (``family``), its complete spec (``spec``, JSON),
  the parameters of the features it was trained on (``features``, JSON: the cache's
  params.json; empty for a family that reads audio), its provenance (``provenance``,
  JSON: training dataset, features, model and size names, training hours, config hash,
  software versions) and the arrays its ``fit`` returned (templates and their keys, or
  network weights);
* ``decoding.json``: ``params``, the decoder's parameters.

``load_model`` is the one way to read a model back; a truncated or corrupt file (an
array failing the CRC-32 the zip format recorded at write time) is one error naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from . import families
from .errors import LowrankAmtError
from .runtime.io import atomic_path, read_json, read_npz

#: Array names the file itself uses; a family's arrays take any other name.
RESERVED = ("family", "spec", "features", "provenance")
MODEL_FILE = "model.npz"
DECODING_FILE = "decoding.json"


@dataclasses.dataclass
class Model:
    """A loaded model: its family, complete spec and arrays, the feature parameters it
    reads (None for a family reading audio), its provenance and, when the folder has
    them, its decoding parameters (else None)."""

    family: families.Family
    spec: dict
    arrays: dict
    features: dict | None
    provenance: dict
    decoding: dict | None
    path: Path


def save_model(path, family_name: str, spec: dict, arrays: dict, *, features: dict | None = None,
               provenance: dict | None = None) -> None:
    """Write ``model.npz`` atomically (no pickles, so any numpy can read it)."""
    clash = set(arrays) & set(RESERVED)
    if clash:
        raise ValueError(f"model arrays may not be called {sorted(clash)}")
    text = {"family": family_name, "spec": spec, "features": features or {}, "provenance": provenance or {}}
    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in text.items()},
                 **arrays)


def model_file(path) -> Path:
    """``path`` itself, or its ``model.npz`` when it is a folder."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def load_model(path) -> Model:
    """The model of a folder or of its ``model.npz``; a missing, unreadable or foreign
    file is an error naming it."""
    path = model_file(path)
    if not path.exists():
        raise LowrankAmtError(f"model {path} does not exist; train it first")
    arrays = read_npz(path, "model", "delete it and train again")
    if not {"family", "spec"} <= set(arrays):
        raise LowrankAmtError(f"{path} is not a lowrank-amt model (it lacks family and spec)")
    text = {name: _json_entry(path, name, arrays.pop(name)) if name in arrays else {} for name in RESERVED[1:]}
    family, spec = families.resolve(text["spec"])
    if family.name != str(arrays.pop("family")):
        raise LowrankAmtError(f"model {path}: its spec names family {family.name!r} but the file another")
    decoding_path = path.parent / DECODING_FILE
    decoding = read_json(decoding_path).get("params") if decoding_path.exists() else None
    return Model(family, spec, arrays, text["features"] or None, text["provenance"], decoding, path)


def _json_entry(path: Path, name: str, value) -> dict:
    """A JSON object entry of ``model.npz`` (spec, features, provenance); a damaged one
    is an error naming the file and the entry."""
    try:
        entry = json.loads(str(value))
    except ValueError as exc:
        raise LowrankAmtError(f"model {path}: its {name} entry is not valid JSON ({exc}); train it again") from exc
    if not isinstance(entry, dict):
        raise LowrankAmtError(f"model {path}: its {name} entry is not a JSON object; train it again")
    return entry
