"""A family's spec keys, each declared once: a table of ``Param`` (name, default, the JSON
Schema of its values, a one-line meaning). From these tables come the defaults and
choices a family reports, the checks of ``families.resolve``, the model part of the
config schema (``with_model_definitions``: the family enum, one branch per family and one
``model_<...>`` definition per table) and, through the schema, config/README.md's model
tables. A family's ``skip()`` keeps only the checks that span several keys.
"""

from __future__ import annotations

import copy

import jsonschema


class Param:
    """One spec key: ``Param("beta", 1.0, type="number", minimum=0, meaning="...")``; the
    keywords besides ``meaning`` are JSON Schema (``type``, ``minimum``, ``enum``, ...)."""

    def __init__(self, name: str, default, *, meaning: str, **schema):
        self.name, self.default, self.meaning, self.schema = name, default, meaning, schema
        self._validator = jsonschema.Draft7Validator(schema)

    def json_schema(self) -> dict:
        return {**self.schema, "default": copy.deepcopy(self.default), "description": self.meaning}

    def error(self, value) -> str | None:
        """Why ``value`` is not allowed (None when it is)."""
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        return None if error is None else error.message


#: Keys several families share, declared once.
DEVICE = Param("device", "auto", type="string", enum=["auto", "cpu", "cuda"],
               meaning="Torch device; `auto` takes CUDA when the job has a GPU.")
TEACHER = Param("teacher", None, type=["string", "null"],
                meaning="A model of this config (e.g. `basic_pitch`) whose transcription of the training audio "
                        "replaces the training MIDI (semi-supervised low-rank models: the masks): its notes, "
                        "decoded as its validation split chose, are the targets; validation and test keep their "
                        "MIDI. null = learn from the MIDI.")


def definition(families: list) -> dict:
    """The JSON Schema of the specs of ``families`` (which share one table)."""
    names = [f.name for f in families]
    family = {"const": names[0]} if len(names) == 1 else {"type": "string", "enum": names}
    return {"type": "object", "additionalProperties": False,
            "description": "; ".join(f"`{f.name}`: {f.description}" for f in families) + ".",
            "properties": {"family": {**family, "description": "The family."},
                           **{p.name: p.json_schema() for p in families[0].params}}}


def with_model_definitions(schema: dict) -> dict:
    """``schema`` with its ``model`` definition and one definition per parameter table
    generated from the registered families: families that share a table (nmf, nmfd, ntd)
    share the definition their ``schema_definition`` names; another gets ``model_<name>``."""
    from . import get, names
    groups: dict[str, list] = {}
    for name in names():
        family = get(name)
        key = family.schema_definition or f"model_{name}"
        if key in groups and groups[key][0].params is not family.params:  # a table of its own
            key = f"model_{name}"
        groups.setdefault(key, []).append(family)
    definitions = {**schema.get("definitions", {})}
    definitions["model"] = {
        "type": "object", "required": ["family"],
        "description": "One model variant; its `family` selects which further keys apply.",
        "properties": {"family": {"type": "string", "enum": names(), "description": "; ".join(
            f"`{name}` {get(name).description}" for name in names()) + "."}},
        "allOf": [{"if": {"properties": {"family": {"enum": [f.name for f in group]}}},
                   "then": {"$ref": f"#/definitions/{key}"}} for key, group in groups.items()]}
    definitions.update({key: definition(group) for key, group in groups.items()})
    return {**schema, "definitions": definitions}
