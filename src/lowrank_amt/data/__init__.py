"""Dataset preparation: every preparer writes the same manifest format (manifest.py).

``prepare_dataset`` dispatches on the config entry's ``kind``; a new dataset kind is one
module with a ``prepare(spec, manifest_path, sample_rate, jobs, log)`` function and one
line in ``PREPARERS``.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import LowrankAmtError

#: dataset kind -> module (under lowrank_amt.data) whose ``prepare`` builds it.
PREPARERS = {
    "synthetic": "synth",
    "maestro": "maestro",
    "maps": "maps",
    "guitarset": "guitarset",
    "slakh": "slakh",
    "folder": "folder",
}


def prepare_dataset(spec: dict, manifest_path, sample_rate: int, jobs: int = 1, log=print) -> None:
    kind = spec.get("kind")
    if kind not in PREPARERS:
        raise LowrankAmtError(f"dataset kind {kind!r} is unknown; known kinds: {', '.join(sorted(PREPARERS))}")
    module = import_module(f".{PREPARERS[kind]}", __name__)
    module.prepare(spec, manifest_path, sample_rate, jobs=jobs, log=log)
