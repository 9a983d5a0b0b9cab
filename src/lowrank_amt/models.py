"""A trained model on disk: one ``model.npz`` for every family, holding the family's
name (``family``), its complete spec (``spec``, JSON) and the arrays its ``fit``
returned. ``load_model`` is the one way to read one back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import families
from .errors import LowrankAmtError
from .io import atomic_path

#: Array names the file itself uses; a family's arrays take any other name.
RESERVED = ("family", "spec")


def save_model(path, family_name: str, spec: dict, arrays: dict) -> None:
    """Write ``model.npz`` atomically (no pickles, so any numpy can read it)."""
    clash = set(arrays) & set(RESERVED)
    if clash:
        raise ValueError(f"model arrays may not be called {sorted(clash)}")
    with atomic_path(path) as tmp:
        np.savez(tmp, family=family_name, spec=json.dumps(spec, sort_keys=True), **arrays)


def load_model(path):
    """(family, spec, arrays) of a ``model.npz``; a missing, unreadable or foreign file
    is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise LowrankAmtError(f"model {path} does not exist; train it first")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise LowrankAmtError(f"model {path} cannot be read ({exc}); delete it and train again") from exc
    if not set(RESERVED) <= set(arrays):
        raise LowrankAmtError(f"{path} is not a lowrank-amt model (it lacks {', '.join(RESERVED)})")
    family, spec = families.resolve(json.loads(str(arrays.pop("spec"))))
    if family.name != str(arrays.pop("family")):
        raise LowrankAmtError(f"model {path}: its spec names family {family.name!r} but the file another")
    return family, spec, arrays
