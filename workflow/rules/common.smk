# Config validation and input functions: rules below hold no logic of their own.
import copy
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from lowrank_amt.runtime import run_lock
from lowrank_amt.constants import SUMMARY_FIGURES
from lowrank_amt.config import check_study, config_hash, load_schema, model_config_hash
from lowrank_amt.errors import LowrankAmtError

# The models as the user wrote them, before validation fills in defaults: a model's
# identity (its params, hence whether Snakemake retrains it) is what the user wrote, so a
# key added to a family with a default retrains nothing. The stages fill the defaults in.
WRITTEN_MODELS = copy.deepcopy(config.get("models") or {})

try:
    SPEC = check_study(
        config,
        load_schema(Path(workflow.current_basedir) / "../schemas/config.schema.yaml"),
    )
except LowrankAmtError as error:  # one line naming the key, no traceback
    sys.exit(str(error))


envvars:
    "PATH",


# The rules call the package's command, `lowrank-amt`; when it is not on PATH (as when
# .venv/bin/snakemake runs without .venv/bin on PATH), the folder of the Python running
# Snakemake, where it is installed, goes on the PATH the jobs inherit.
if not shutil.which("lowrank-amt"):
    os.environ["PATH"] = (
        f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
RESULTS = f"{config['results']}/{config['study']}"
# One run per results folder (lowrank_amt/runtime/run_lock.py): a second stops here with one line.
if workflow.is_main_process:
    refusal = run_lock.refusal(RESULTS, sys.argv)
    if refusal:
        sys.exit(refusal)
DATASETS = list(config["datasets"])
# Models train on these; datasets with `role: test` are evaluation sets only.
TRAINING_DATASETS = [d for d in DATASETS if config["datasets"][d]["role"] != "test"]
TEST_ONLY = [d for d in DATASETS if config["datasets"][d]["role"] == "test"]
FEATURES = list(config["features"])
# `only_models`: a part of the study, with the teachers its models learn from
SELECTED = config["only_models"] or list(config["models"])
MODELS = [
    m
    for m in config["models"]
    if m in SELECTED or any(SPEC[s][1].get("teacher") == m for s in SELECTED)
]
FAMILY = {name: family for name, (family, _) in SPEC.items()}
# What each family declares (families/base.py) decides which rules apply to a model.
WITH_DICTIONARY = [m for m in MODELS if FAMILY[m].has_dictionary]
# excerpt figures draw outputs against the piano roll at the feature frame rate
ON_FEATURES = [m for m in MODELS if FAMILY[m].reads_features()]
LEARNING = [m for m in MODELS if FAMILY[m].training_data(SPEC[m][1]) is not None]
# Models whose transcription of the training audio other models learn from.
TEACHERS = sorted({SPEC[m][1]["teacher"] for m in MODELS if SPEC[m][1].get("teacher")})
# One run = one model variant trained at one size on one feature set of one dataset.
RUN = "{dataset}/{features}/{model}/{size}"
STUDY_CONFIG_HASH = config_hash(config)


def choice(names):
    """A wildcard pattern matching exactly these names (none: matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    dataset=choice(DATASETS),
    test=choice(TEST_ONLY),
    features=choice(FEATURES),
    model=choice(MODELS),
    teacher=choice(TEACHERS),
    size=r"all|isolated|pretrained|[0-9.]+h",


def stage_request(stage):
    """The `resources` config entry of a stage (see config/README.md)."""
    return config["resources"].get(stage, config["resources"]["default"])


def stage_threads(stage):
    return stage_request(stage)["threads"]


def stage_resources(stage):
    """mem_mb, runtime and gpu of a stage's jobs, as Snakemake resources. A job that asks
    for a GPU goes to the cluster's GPU partition (`gpu_partition`, which a Slurm profile
    sets): the one place where a job's partition follows from its GPU request."""
    request = {k: v for k, v in stage_request(stage).items() if k != "threads"}
    if request.get("gpu") and config["gpu_partition"]:
        request["slurm_partition"] = config["gpu_partition"]
    return request


def as_json(value):
    return json.dumps(value, sort_keys=True)


def model_sizes(model):
    """Training sizes of a model: the study's `training_hours` (up to the model's
    `max_training_hours`) for models that learn from the training pieces; one size for
    those that learn from the isolated notes or are pretrained."""
    family, spec = SPEC[model]
    data = family.training_data(spec)
    if data is None:
        return ["pretrained"]
    if data == "isolated":
        return ["isolated"]
    hours = config["training_hours"]
    if not hours:
        return ["all"]
    cap = config["max_training_hours"].get(model, float("inf"))
    return [f"{h:g}h" for h in hours if h <= cap]


def size_hours(size):
    return size[:-1] if size.endswith("h") else "all"


def dataset_spec(wildcards):
    """A dataset's entry as its preparer takes it (its role is the workflow's business)."""
    spec = config["datasets"][wildcards.dataset]
    return as_json({k: v for k, v in spec.items() if k != "role"})


def test_index(wildcards):
    """The feature index of the test-only dataset ``wildcards.test``."""
    return rules.extract_features.output.index.format(
        dataset=wildcards.test, features=wildcards.features
    )


def test_manifest(wildcards):
    return rules.prepare_dataset.output.manifest.format(dataset=wildcards.test)


def features_spec(wildcards):
    return as_json(config["features"][wildcards.features])


def model_spec(wildcards):
    return as_json(WRITTEN_MODELS[wildcards.model])


def training_index(wildcards):
    """The feature index a model learns from: its dataset's; with a ``teacher``, the copy
    whose training targets are the teacher's notes; for supervised templates from another
    dataset's isolated notes (``templates_from``), that dataset's."""
    spec = SPEC[wildcards.model][1]
    if spec.get("teacher"):
        return rules.teach.output.index.format(
            dataset=wildcards.dataset,
            features=wildcards.features,
            teacher=spec["teacher"],
        )
    source = spec.get("templates_from") or wildcards.dataset
    return rules.extract_features.output.index.format(
        dataset=source, features=wildcards.features
    )


def teacher_files(wildcards):
    """The teacher's model and decoding.json on this dataset, at its largest size."""
    run = dict(
        wildcards.items(),
        model=wildcards.teacher,
        size=model_sizes(wildcards.teacher)[-1],
    )
    return {
        "model": rules.train_model.output.model.format(**run),
        "decoding": rules.decode.output.info.format(**run),
    }


def train_hours(wildcards):
    return size_hours(wildcards.size)


def provenance(wildcards):
    """Where a model comes from, stored in it: the study's names for its dataset, feature
    set, model and size, and the hash of the config entries it depends on."""
    return as_json(
        {
            "study": config["study"],
            **dict(wildcards.items()),
            "config_hash": model_config_hash(
                config,
                WRITTEN_MODELS,
                wildcards.dataset,
                wildcards.features,
                wildcards.model,
            ),
        }
    )


def all_runs():
    """Every (dataset, features, model, size) of the study."""
    return [
        {
            "dataset": d,
            "features": f,
            "model": m,
            "size": s,
            "family": FAMILY[m].name,
            "supervision": SPEC[m][1].get("supervision", ""),
            "form": SPEC[m][1].get("form", ""),
            "steps_per_epoch": SPEC[m][1].get("steps_per_epoch") or 0,
        }
        for d in TRAINING_DATASETS
        for f in FEATURES
        for m in MODELS
        for s in model_sizes(m)
    ]


def evaluations():
    """Every run on every dataset it is tested on: its own (``test`` = its dataset),
    then each test-only dataset."""
    return [
        {**run, "test": test}
        for run in all_runs()
        for test in [run["dataset"], *TEST_ONLY]
    ]


def run_files(run):
    """The files `aggregate` reads for one run on one test set (see summary.aggregate)."""
    path = RUN.format(**run)
    own = run["test"] == run["dataset"]
    files = {
        "per_track": (
            rules.evaluate if own else rules.evaluate_on
        ).output.per_track.format(**run),
        "train_info": rules.train_model.output.info.format(**run),
        "activations_info": (
            rules.activations if own else rules.activations_on
        ).output.info.format(**run),
        "decoding_info": (rules.decode if own else rules.decode_on).output.info.format(
            **run
        ),
    }
    if run["model"] in LEARNING:
        files["loss"] = rules.train_model.output.loss.format(**run)
        files["train_benchmark"] = f"{RESULTS}/benchmarks/train/{path}.tsv"
    if run["model"] in WITH_DICTIONARY:
        files["interpretability"] = rules.assess_dictionary.output.scores.format(**run)
    return files


def aggregate_inputs():
    return [f for run in evaluations() for f in run_files(run).values()]


def aggregate_runs_json(wildcards):
    runs = []
    for run in evaluations():
        hours = size_hours(run["size"])
        runs.append(
            {
                **{k: v for k, v in run.items() if k != "test"},
                **run_files(run),
                "test_dataset": run["test"],
                "train_hours": None if hours == "all" else float(hours),
            }
        )
    return as_json(runs)


def loss_files():
    """model@size -> loss.csv of every run that learns."""
    return {
        f"{run['model']}@{run['size']}": rules.train_model.output.loss.format(**run)
        for run in all_runs()
        if run["model"] in LEARNING
    }


def loss_arguments(wildcards):
    return " ".join(f"{name}={path}" for name, path in loss_files().items())


def loss_inputs():
    return list(loss_files().values())


def velocity_files():
    """model@size -> decoding.json (with its velocity curve) of every model the shared
    grid decoder decodes, at its largest size."""
    return {
        f"{run['model']}@{run['size']}": rules.decode.output.info.format(**run)
        for run in all_runs()
        if FAMILY[run["model"]].decoder == "grid"
        and run["size"] == model_sizes(run["model"])[-1]
    }


def velocity_arguments(wildcards):
    return " ".join(f"{name}={path}" for name, path in velocity_files().items())


def velocity_inputs():
    return list(velocity_files().values())


def figure_outputs():
    """Per-model figures at the model's largest training size: its dictionary (models
    that have one) and a test excerpt of its activations (models on the features)."""
    figures = []
    for run in all_runs():
        if run["size"] != model_sizes(run["model"])[-1]:
            continue
        if run["model"] in WITH_DICTIONARY:
            figures.append(rules.plot_dictionary.output[0].format(**run))
        if run["model"] in ON_FEATURES:
            figures.append(rules.plot_excerpt.output[0].format(**run))
    return figures


def final_outputs():
    return [
        rules.aggregate.output.results,
        rules.aggregate.output.markdown,
        *(f"{RESULTS}/plots/{kind}.svg" for kind in SUMMARY_FIGURES),
        rules.scaling_tables.output[0],
        rules.plot_losses.output[0],
        *([rules.plot_velocity.output[0]] if velocity_files() else []),
        *figure_outputs(),
    ]


def oracle_inputs(wildcards):
    """The labelled oracle-threshold columns read the activations of models decoded by
    the shared grid decoder."""
    if not config["evaluation"]["oracle"] or FAMILY[wildcards.model].decoder != "grid":
        return []
    return [rules.activations.output.activations.format(**wildcards)]


def oracle_arguments(wildcards, input):
    if not oracle_inputs(wildcards):
        return ""
    return (
        f"--activations {input.activations} --decoding-info {input.decoding}"
        f" --decoding {shlex.quote(as_json(config['decoding']))}"
    )


def excerpt_track(wildcards):
    track = config["evaluation"]["excerpt_track"]
    return f"--track {track}" if track else ""
