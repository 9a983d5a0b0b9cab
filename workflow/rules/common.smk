# Config validation and input functions: rules below hold no logic of their own.
import json
import re
import shlex
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
FAMILY = {name: spec["family"] for name, spec in config["models"].items()}
LOWRANK = [m for m in MODELS if FAMILY[m] in ("nmf", "nmfd", "ntd")]
NETWORK = [m for m in MODELS if FAMILY[m] == "network"]
BASIC_PITCH = [m for m in MODELS if FAMILY[m] == "basic_pitch"]
# One run = one model variant trained at one size on one feature set of one dataset.
RUN = "{dataset}/{features}/{model}/{size}"
STUDY_CONFIG_HASH = config_hash(config)


def choice(names):
    """A wildcard pattern matching exactly these names (none: matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    dataset=choice(DATASETS),
    features=choice(FEATURES),
    model=choice(MODELS),
    size=r"all|isolated|pretrained|[0-9.]+h",


def stage_request(stage):
    """The `resources` config entry of a stage (see config/README.md)."""
    return config["resources"].get(stage, config["resources"]["default"])


def stage_threads(stage):
    return stage_request(stage)["threads"]


def stage_resources(stage):
    """mem_mb, runtime and gpu of a stage's jobs, as Snakemake resources."""
    return {k: v for k, v in stage_request(stage).items() if k != "threads"}


def as_json(value):
    return json.dumps(value, sort_keys=True)


def model_sizes(model):
    """Training sizes of a model: the study's `training_hours` for models that learn from
    the training pieces; one size for those that do not."""
    spec = config["models"][model]
    if spec["family"] == "basic_pitch":
        return ["pretrained"]
    if spec["family"] != "network" and spec["supervision"] == "supervised":
        return ["isolated"]
    hours = config["training_hours"]
    return [f"{h:g}h" for h in hours] if hours else ["all"]


def size_hours(size):
    return size[:-1] if size.endswith("h") else "all"


def dataset_spec(wildcards):
    return as_json(config["datasets"][wildcards.dataset])


def features_spec(wildcards):
    return as_json(config["features"][wildcards.features])


def model_spec(wildcards):
    return as_json(config["models"][wildcards.model])


def train_hours(wildcards):
    return size_hours(wildcards.size)


def all_runs():
    """Every (dataset, features, model, size) of the study."""
    return [
        {"dataset": d, "features": f, "model": m, "size": s, "family": FAMILY[m],
         "supervision": config["models"][m].get("supervision", "")}
        for d in DATASETS
        for f in FEATURES
        for m in MODELS
        for s in model_sizes(m)
    ]


def run_files(run):
    """The files `aggregate` reads for one run (see evaluation.aggregate)."""
    path = RUN.format(**run)
    files = {
        "per_track": f"{RESULTS}/metrics/{path}/per_track.csv",
        "train_info": f"{RESULTS}/models/{path}/train.json",
        "activations_info": f"{RESULTS}/transcriptions/{path}/activations.json",
        "decoding_info": f"{RESULTS}/transcriptions/{path}/decoding.json",
    }
    if run["family"] != "basic_pitch":
        files["loss"] = f"{RESULTS}/models/{path}/loss.csv"
        files["train_benchmark"] = f"{RESULTS}/benchmarks/train/{path}.tsv"
    if run["model"] in LOWRANK:
        files["interpretability"] = f"{RESULTS}/interpretability/{path}/interpretability.json"
    return files


def aggregate_inputs():
    return [f for run in all_runs() for f in run_files(run).values()]


def aggregate_runs_json(wildcards):
    runs = []
    for run in all_runs():
        hours = size_hours(run["size"])
        runs.append({**run, **run_files(run), "train_hours": None if hours == "all" else float(hours)})
    return as_json(runs)


def loss_arguments(wildcards):
    return " ".join(
        f"{run['model']}@{run['size']}={run_files(run)['loss']}"
        for run in all_runs()
        if "loss" in run_files(run)
    )


def loss_inputs():
    return [run_files(run)["loss"] for run in all_runs() if "loss" in run_files(run)]


def figure_outputs():
    """Per-model figures at the model's largest training size: its dictionary (low-rank
    models) and a test excerpt of its activations (all but Basic Pitch)."""
    figures = []
    for run in all_runs():
        if run["size"] != model_sizes(run["model"])[-1]:
            continue
        path = RUN.format(**run)
        if run["model"] in LOWRANK:
            figures.append(f"{RESULTS}/plots/dictionary/{path}.svg")
        if run["family"] != "basic_pitch":
            figures.append(f"{RESULTS}/plots/excerpt/{path}.svg")
    return figures


def final_outputs():
    return [
        f"{RESULTS}/summary/results.csv",
        f"{RESULTS}/summary/summary.md",
        *(f"{RESULTS}/plots/{kind}.svg" for kind in ("tradeoff", "scaling", "cost-scaling", "losses")),
        *figure_outputs(),
    ]
