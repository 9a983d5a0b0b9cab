"""The datasets: one module per kind, each with a ``prepare(spec, manifest_path,
sample_rate, jobs, log)`` function that writes the same manifest format (manifest.py).

A new dataset kind is one module and one line in ``PREPARERS``; the data stage
(``stages/data.py``) picks the module by the config entry's ``kind``.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import LowrankAmtError

#: dataset kind -> module (under lowrank_amt.datasets) whose ``prepare`` builds it.
PREPARERS = {
    "synthetic": "synth",
    "maestro": "maestro",
    "maps": "maps",
    "guitarset": "guitarset",
    "slakh": "slakh",
    "folder": "folder",
}


def preparer(kind: str):
    """The module that prepares datasets of ``kind``, or an error naming the known kinds."""
    if kind not in PREPARERS:
        raise LowrankAmtError(f"dataset kind {kind!r} is unknown; known kinds: {', '.join(sorted(PREPARERS))}")
    return import_module(f".{PREPARERS[kind]}", __name__)
