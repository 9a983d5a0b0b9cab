"""The model part of the config schema, generated from the families' parameter tables
(``param.Param``): the family enum, one branch per family and one ``model_<...>``
definition per table (``with_model_definitions``). A family's ``skip()`` keeps only the
checks that span several keys.
"""

from __future__ import annotations

from ..learning import augment
from ..param import Param, properties

#: Keys several families share, declared once.
DEVICE = Param("device", "auto", type="string", enum=["auto", "cpu", "cuda"],
               meaning="Torch device; `auto` takes CUDA when the job has a GPU.")
TEACHER = Param("teacher", None, type=["string", "null"],
                meaning="A model of this config (e.g. `basic_pitch`) whose transcription of the training audio "
                        "replaces the training MIDI (semi-supervised low-rank models: the masks): its notes, "
                        "decoded as its validation split chose, are the targets; validation and test keep their "
                        "MIDI. null = learn from the MIDI.")

STEPS_PER_EPOCH = Param("steps_per_epoch", 0, type="integer", minimum=0,
                        meaning="Mini-batches per epoch, each of random segments (0: every training frame once per "
                                "epoch; a split of fewer segments gives fewer). A fixed number keeps an epoch's cost "
                                "flat as the training data grows: at most epochs x steps_per_epoch batches at "
                                "any size.")

AUGMENT = Param("augment", {}, type="object", additionalProperties=False, properties=properties(augment.PARAMS),
                meaning="Training-time augmentation of the features (augment.py), a random gain, equaliser, room "
                        "and noise per training segment, seeded; {} (the default): none. Keys: " + " ".join(
                            f"`{p.name}`: {p.meaning}" for p in augment.PARAMS))


def definition(families: list) -> dict:
    """The JSON Schema of the specs of ``families`` (which share one table)."""
    names = [f.name for f in families]
    family = {"const": names[0]} if len(names) == 1 else {"type": "string", "enum": names}
    return {"type": "object", "additionalProperties": False,
            "description": "; ".join(f"`{f.name}`: {f.description}" for f in families) + ".",
            "properties": {"family": {**family, "description": "The family."},
                           **properties(families[0].params)}}


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
