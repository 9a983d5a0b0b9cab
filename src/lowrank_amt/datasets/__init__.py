"""The datasets: one module per kind, each with ``DESCRIPTION``, ``PARAMS`` (its config
keys, ``param.Param``) and a ``prepare(spec, manifest_path, sample_rate, jobs, log)``
function that writes the same manifest format (manifest.py).

A new dataset kind is one module and one line in ``PREPARERS``: the data stage
(``stages/data.py``) picks the module by the config entry's ``kind``, and the config
schema's dataset part is generated from the modules (``with_dataset_definitions``).
"""

from __future__ import annotations

from importlib import import_module

from ..errors import LowrankAmtError
from ..param import Param, complete, properties

#: dataset kind -> module (under lowrank_amt.datasets) whose ``prepare`` builds it.
PREPARERS = {
    "synthetic": "synth",
    "maestro": "maestro",
    "maps": "maps",
    "guitarset": "guitarset",
    "slakh": "slakh",
    "ensemble": "ensemble",
    "folder": "folder",
}

#: The one key every kind has besides ``kind``; the workflow's, not the preparers'.
ROLE = Param("role", "train_and_test", type="string", enum=["train_and_test", "test"],
             meaning="`train_and_test`: models are trained on its training split and evaluated on its test split; "
                     "`test`: an evaluation set only (no training, no validation split needed): every model trained "
                     "on the other datasets is evaluated on its test split with the decoding chosen on its own "
                     "dataset's validation split (its own rows in the results, `test set` column).")


def preparer(kind: str):
    """The module that prepares datasets of ``kind``, or an error naming the known kinds."""
    if kind not in PREPARERS:
        raise LowrankAmtError(f"dataset kind {kind!r} is unknown; known kinds: {', '.join(sorted(PREPARERS))}")
    return import_module(f".{PREPARERS[kind]}", __name__)


def options(params, spec: dict) -> dict:
    """A dataset entry's keys with their defaults filled in (``kind`` and ``role`` aside);
    an unknown key or a refused value is an error naming it."""
    return complete(params, {k: v for k, v in spec.items() if k not in ("kind", "role")}, "datasets.<name>")


def with_dataset_definitions(schema: dict) -> dict:
    """``schema`` with its ``dataset`` definition (the kind enum, one branch per kind) and
    one ``dataset_<kind>`` definition per module, generated from the modules' tables."""
    modules = {kind: preparer(kind) for kind in PREPARERS}
    definitions = {**schema.get("definitions", {})}
    definitions["dataset"] = {
        "type": "object", "required": ["kind"],
        "description": "One dataset; its `kind` selects which further keys apply (definitions dataset_<kind>).",
        "properties": {"kind": {"type": "string", "enum": list(modules), "description": "How the dataset is made: "
                                + "; ".join(f"`{kind}`: {m.DESCRIPTION.rstrip('.')}" for kind, m in modules.items())
                                + "."},
                       "role": ROLE.json_schema()},
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}}, "then": {"$ref": f"#/definitions/dataset_{kind}"}}
                  for kind in modules]}
    for kind, module in modules.items():
        required = [p.name for p in module.PARAMS if p.required]
        definitions[f"dataset_{kind}"] = {
            "type": "object", "additionalProperties": False, **({"required": required} if required else {}),
            "properties": {"kind": {"const": kind, "description": module.DESCRIPTION}, "role": ROLE.json_schema(),
                           **properties(module.PARAMS)}}
    return {**schema, "definitions": definitions}
