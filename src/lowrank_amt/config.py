"""Config validation against the study's JSON schema.

Snakemake's ``validate`` reports a wrong value without saying where it sits in the
config ("'x' is not of type 'number'"); a study config nests models and datasets by
name, so this module reports the full key path ("models.nmf_kl.beta") instead, and
fills schema defaults into omitted keys, including inside named entries.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import yaml

from .errors import LowrankAmtError


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft7Validator)


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # The offending key is in the message, not the path: name it in the path too.
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts.append(extra[0] if len(extra) == 1 else "{" + ", ".join(extra) + "}")
        return ".".join(parts)
    return ".".join(parts) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"config key '{key}' is not a known key (allowed here: {allowed})"
    return f"config key '{key}': {error.message}"


def validate_config(config: dict, schema: dict) -> dict:
    """Validate ``config`` in place, filling defaults; raise one clear error per problem.

    Returns the same dict for convenience.
    """
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_describe(e) for e in errors]
        raise LowrankAmtError("invalid config: " + "; ".join(lines))
    return config


def config_hash(config: dict) -> str:
    """A short, stable hash of a config (recorded beside results)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
