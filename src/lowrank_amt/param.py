"""Config keys, each declared once: a table of ``Param`` (name, default, the JSON Schema of
its values, a one-line meaning) per model family, dataset kind and the feature sets. From
these tables come the defaults the code fills in, the checks of a spec given directly to
the code, the matching part of the config schema (``config.load_schema``) and, through
the schema, config/README.md's tables.
"""

from __future__ import annotations

import copy

import jsonschema

from .errors import LowrankAmtError


class Param:
    """One key: ``Param("beta", 1.0, type="number", minimum=0, meaning="...")``; the
    keywords besides ``meaning`` and ``required`` are JSON Schema (``type``, ``minimum``,
    ``enum``, ...). A required key has no default (``None`` stands in for it)."""

    def __init__(self, name: str, default, *, meaning: str, required: bool = False, **schema):
        self.name, self.default, self.meaning, self.required, self.schema = name, default, meaning, required, schema
        self._validator = jsonschema.Draft7Validator(schema)

    def json_schema(self) -> dict:
        described = {**self.schema, "description": self.meaning}
        return described if self.required else {**described, "default": copy.deepcopy(self.default)}

    def error(self, value) -> str | None:
        """Why ``value`` is not allowed (None when it is)."""
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        return None if error is None else error.message


def defaults(params) -> dict:
    """Every key of a table with its default value."""
    return {p.name: copy.deepcopy(p.default) for p in params}


def properties(params) -> dict:
    """The JSON Schema ``properties`` of a table."""
    return {p.name: p.json_schema() for p in params}


def definition(params, description: str | None = None) -> dict:
    """The JSON Schema of a config section holding a table's keys and no others."""
    return {"type": "object", "additionalProperties": False, **({"description": description} if description else {}),
            "properties": properties(params)}


def refusal(params, spec: dict) -> tuple[str, str] | None:
    """(key, why) of the first key of ``spec`` whose value its ``Param`` refuses, or None."""
    for param in params:
        why = param.error(spec[param.name]) if param.name in spec else None
        if why is not None:
            return param.name, why
    return None


def complete(params, spec: dict, where: str) -> dict:
    """``spec`` with the defaults filled in; an unknown key or a refused value is an error
    naming it as ``<where>.<key>`` (a missing required key is the caller's to explain)."""
    known = {p.name for p in params}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise LowrankAmtError(f"config key '{where}.{unknown[0]}' is unknown (allowed: {', '.join(sorted(known))})")
    refused = refusal(params, spec)
    if refused is not None:
        raise LowrankAmtError(f"config key '{where}.{refused[0]}': {refused[1]}")
    return {**defaults(params), **spec}
