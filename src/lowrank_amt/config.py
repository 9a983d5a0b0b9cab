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

from . import param
from .errors import LowrankAmtError
from .runtime.io import read_text


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
    """The config schema at ``path``, with its dataset, feature, model, decoding and
    evaluation definitions generated from the parameter tables (``param.py``) of the
    dataset modules, the feature sets, the registered families, the decoder's tuning and
    the metrics' registry."""
    from .datasets import with_dataset_definitions
    from .decoding import tuning
    from .evaluation import registry
    from .families.schema import with_model_definitions
    from .signal.spectrogram import definition as features_definition
    schema = read_yaml(path, "schema")
    if not isinstance(schema.get("definitions"), dict):
        raise LowrankAmtError(f"{path} is not the config schema (it has no definitions)")
    schema = with_model_definitions(with_dataset_definitions(schema))
    return {**schema, "definitions": {**schema["definitions"], "features": features_definition(),
                                      "decoding": param.definition(tuning.PARAMS, tuning.DESCRIPTION),
                                      "evaluation": param.definition(registry.PARAMS)}}


def read_yaml(path: str | Path, what: str = "config") -> dict:
    """A YAML mapping from ``path`` (an empty file is an empty one); a file that is not
    one is one error naming it and the line."""
    try:
        data = yaml.safe_load(read_text(path, what))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise LowrankAmtError(f"{what} {path} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LowrankAmtError(f"{what} {path} is not a YAML mapping of keys (it holds a {type(data).__name__})")
    return data


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


def check_study(config: dict, schema: dict) -> dict:
    """Validate a study config in place (``validate_config``) and the references between
    its keys; returns each model's (family, complete spec), resolved from the models as
    written. Any fault is one ``LowrankAmtError``, "invalid config: " and the key."""
    written = copy.deepcopy(config.get("models") or {})
    validate_config(config, schema)
    try:
        return _check_references(config, written)
    except LowrankAmtError as error:
        raise LowrankAmtError(f"invalid config: {error}") from None


def _check_references(config: dict, written: dict) -> dict:
    from . import families
    # every model's family and complete spec; a refused combination stops the run here
    specs = {name: families.resolve(spec) for name, spec in written.items()}
    for name, (_, spec) in specs.items():
        if spec.get("templates_from") not in (None, *config["datasets"]):
            raise LowrankAmtError(f"config key 'models.{name}.templates_from' names no dataset of the config "
                                  f"({spec['templates_from']!r})")
        cap, sizes = config["max_training_hours"].get(name), config["training_hours"]
        if cap is not None and sizes and not any(h <= cap for h in sizes):
            raise LowrankAmtError(f"config key 'max_training_hours.{name}' ({cap}) is below every size of "
                                  "'training_hours': the model would train at no size")
        teacher = spec.get("teacher")
        if teacher is not None and (teacher not in specs or teacher == name or specs[teacher][1].get("teacher")):
            raise LowrankAmtError(f"config key 'models.{name}.teacher' must name another model of the config "
                                  f"that has no teacher itself (got {teacher!r})")
    for name in config["max_training_hours"]:
        if name not in specs:
            raise LowrankAmtError(f"config key 'max_training_hours.{name}' names no model of the config")
    for name in config.get("only_models") or []:
        if name not in specs:
            raise LowrankAmtError(f"config key 'only_models' names no model of the config ({name!r})")
    return specs


def config_hash(config: dict) -> str:
    """A short, stable hash of a config (recorded beside results)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def model_config_hash(config: dict, written_models: dict, dataset: str, features: str, model: str) -> str:
    """The hash of the config entries a model depends on (its provenance's
    ``config_hash``): the sample rate, its dataset and feature set as validated (with
    defaults) and the model as the user wrote it, so that another change of the config,
    e.g. to the decoding grid, does not retrain it."""
    return config_hash({"sample_rate": config["sample_rate"], "dataset": config["datasets"][dataset],
                        "features": config["features"][features], "model": written_models[model]})
