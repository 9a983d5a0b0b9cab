"""The registry of model families, and spec handling: the one place that turns a model
spec (an entry of the config's ``models``) into its family and its complete spec.

Adding a family: write one module with a ``Family`` subclass (``base.py`` states the
contract) and add one line to ``_BUILTIN`` below (or call ``register`` from your own
code). The stages, the CLI, interpretability and the workflow then know it.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import LowrankAmtError
from .base import Family, Trained, TrainingRun

#: name -> "module:Class" of the built-in families, imported on first use (so that the
#: workflow's rule parsing does not import torch models it never runs).
_BUILTIN = {
    "nmf": "lowrank:NMF",
    "nmfd": "lowrank:NMFD",
    "ntd": "lowrank:NTD",
    "network": "network:Network",
    "basic_pitch": "basic_pitch:BasicPitch",
    "transkun": "transkun:Transkun",
    "unrolled": "unrolled:Unrolled",
}

_LOADED: dict[str, Family] = {}


def names() -> list[str]:
    """Every registered family name, built-in ones first."""
    return list(dict.fromkeys([*_BUILTIN, *_LOADED]))


def pretrained_names() -> list[str]:
    """The families whose models are named, not trained (``lowrank-amt transcribe --model NAME``)."""
    return [name for name in names() if get(name).is_pretrained()]


def register(family: Family) -> Family:
    """Add (or replace) a family under its ``name``; returns it."""
    if not family.name:
        raise ValueError("a family needs a name")
    _LOADED[family.name] = family
    return family


def get(name: str) -> Family:
    """The family called ``name``; an unknown name is an error listing the known ones."""
    if name not in _LOADED:
        if name not in _BUILTIN:
            raise LowrankAmtError(f"model key 'family' is {name!r}; allowed: {', '.join(names())}")
        module, cls = _BUILTIN[name].split(":")
        _LOADED[name] = getattr(import_module(f"{__name__}.{module}"), cls)()
    return _LOADED[name]


def resolve(spec: dict) -> tuple[Family, dict]:
    """(family, the spec with defaults filled in) of a model spec; an unknown key, a
    value its ``Param`` refuses (type, range, choices) or a refused combination is an
    error naming the key."""
    if "family" not in spec:
        raise LowrankAmtError("model spec has no 'family'")
    family = get(spec["family"])
    unknown = sorted(set(spec) - set(family.defaults) - {"family"})
    if unknown:
        raise LowrankAmtError(f"model key '{unknown[0]}' is not a key of family '{family.name}' "
                              f"(allowed: {', '.join(sorted(family.defaults))})")
    spec = {"family": family.name, **family.defaults, **spec}
    why = family.check_keys(spec)
    if why is not None:
        raise LowrankAmtError(why)
    refused, why = family.skip(spec)
    if refused:
        raise LowrankAmtError(why)
    return family, spec


__all__ = ["Family", "Trained", "TrainingRun", "get", "names", "pretrained_names", "register", "resolve"]
