# Config validation and input functions: rules below hold no logic of their own.
import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from lowrank_amt.config import config_hash, load_schema, validate_config
from lowrank_amt.errors import LowrankAmtError

try:
    validate_config(config, load_schema(Path(workflow.current_basedir) / "../schemas/config.schema.yaml"))
except LowrankAmtError as error:
    raise WorkflowError(str(error))

RESULTS = f"{config['results']}/{config['study']}"
DATASETS = list(config["datasets"])
FEATURES = list(config["features"])
MODELS = list(config["models"])
RUN = "{dataset}/{features}/{model}"


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),
    features="|".join(map(re.escape, FEATURES)),
    model="|".join(map(re.escape, MODELS)),


def as_json(value):
    return json.dumps(value, sort_keys=True)


def dataset_spec(wildcards):
    return as_json(config["datasets"][wildcards.dataset])


def features_spec(wildcards):
    return as_json(config["features"][wildcards.features])


def model_spec(wildcards):
    return as_json(config["models"][wildcards.model])


def all_runs():
    """Every (dataset, features, model) combination of the study."""
    return [
        {"dataset": d, "features": f, "model": m, "family": config["models"][m]["family"]}
        for d in DATASETS
        for f in FEATURES
        for m in MODELS
    ]


def run_path(template, run):
    return template.format(**run)


AGGREGATE_KEYS = ("per_track", "train_info", "activations_info", "decoding_info")


def aggregate_inputs():
    templates = {
        "per_track": f"{RESULTS}/metrics/{RUN}/per_track.csv",
        "train_info": f"{RESULTS}/models/{RUN}/train.json",
        "activations_info": f"{RESULTS}/transcriptions/{RUN}/activations.json",
        "decoding_info": f"{RESULTS}/transcriptions/{RUN}/decoding.json",
    }
    return {
        f"{key}_{i}": run_path(t, run)
        for i, run in enumerate(all_runs())
        for key, t in templates.items()
    }


def aggregate_runs_json(wildcards, input):
    runs = [
        {**run, **{key: input[f"{key}_{i}"] for key in AGGREGATE_KEYS}}
        for i, run in enumerate(all_runs())
    ]
    return as_json(runs)


def final_outputs():
    return [
        f"{RESULTS}/summary/results.csv",
        f"{RESULTS}/summary/summary.md",
        f"{RESULTS}/plots/tradeoff.svg",
    ]


STUDY_CONFIG_HASH = config_hash(config)
