"""The conda environment and the SLURM profile stay in step with the project.

envs/lowrank-amt.yaml must list every dependency of pyproject.toml (runtime and the
`test` extra), and nothing else but an allow-list of non-Python or CUDA packages;
profiles/slurm/config.yaml may only set resources of rules that exist.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

# PyPI name (normalised) -> conda-forge name (normalised), where they differ.
CONDA_ALIASES = {
    "torch": "pytorch",
    "soundfile": "pysoundfile",
    "soxr": "soxr-python",
}
# Conda packages that have no counterpart in pyproject.toml, on purpose.
CONDA_ONLY = {"python", "pip", "fluidsynth", "pytorch-gpu"}
CONDA_ONLY_PREFIXES = ("cuda",)  # cuda-version, cuda-nvcc, cudnn, ...


def normalise(name: str) -> str:
    """PEP 503: case-insensitive, runs of '-', '_' and '.' are equivalent."""
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_name(spec: str) -> str:
    """'bioconda::snakemake>=9,<10' -> 'snakemake'."""
    spec = spec.split("::")[-1].strip()
    return normalise(re.match(r"[A-Za-z0-9_.\-]+", spec).group(0))


@pytest.fixture
def pyproject_deps(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {normalise(Requirement(s).name) for s in specs}


@pytest.fixture
def conda_env(repo):
    env = yaml.safe_load((repo / "envs" / "lowrank-amt.yaml").read_text())
    conda, pip = set(), set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for spec in entry.get("pip", []):
                if not spec.startswith("-"):  # skip options such as -e . or --no-deps
                    pip.add(normalise(Requirement(spec).name))
        else:
            conda.add(conda_name(entry))
    return env, conda, pip


def test_conda_env_is_valid(conda_env):
    env, conda, _ = conda_env
    assert env["name"] == "lowrank-amt"
    assert "conda-forge" in env["channels"]
    assert {"python", "pip"} <= conda


def test_every_pyproject_dependency_is_in_the_conda_env(pyproject_deps, conda_env):
    _, conda, pip = conda_env
    missing = sorted(
        dep for dep in pyproject_deps if dep not in pip and CONDA_ALIASES.get(dep, dep) not in conda
    )
    assert not missing, f"add to envs/lowrank-amt.yaml (or to CONDA_ALIASES in this test): {missing}"


def test_conda_env_lists_nothing_that_pyproject_lacks(pyproject_deps, conda_env):
    _, conda, pip = conda_env
    known = pyproject_deps | {CONDA_ALIASES.get(dep, dep) for dep in pyproject_deps}
    extra = sorted(
        name
        for name in conda | pip
        if name not in known and name not in CONDA_ONLY and not name.startswith(CONDA_ONLY_PREFIXES)
    )
    assert not extra, f"in envs/lowrank-amt.yaml but not in pyproject.toml: {extra}"


def test_no_package_is_both_conda_and_pip(conda_env):
    _, conda, pip = conda_env
    reverse = {v: k for k, v in CONDA_ALIASES.items()}
    both = sorted(name for name in conda if reverse.get(name, name) in pip)
    assert not both, f"listed twice in envs/lowrank-amt.yaml: {both}"


def test_slurm_profile_targets_existing_rules(repo):
    profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert isinstance(profile["jobs"], int) and profile["jobs"] >= 1
    defaults = profile["default-resources"]
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= set(defaults)

    rules = set()
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        rules |= set(re.findall(r"^rule\s+(\w+)\s*:", smk.read_text(), flags=re.MULTILINE))
    rules |= set(re.findall(r"^rule\s+(\w+)\s*:", (repo / "Snakefile").read_text(), flags=re.MULTILINE))
    assert rules, "no rules found"

    for key in ("set-resources", "set-threads"):
        unknown = sorted(set(profile.get(key) or {}) - rules)
        assert not unknown, f"profiles/slurm/config.yaml {key} names unknown rules: {unknown}"
    assert "prepare_dataset" in profile["set-resources"]


REPO = Path(__file__).resolve().parents[1]
STUDIES = ["config", "tiny", "learning", "pianos", "scaling", "maestro"]


@pytest.fixture(scope="module")
def dry_runs():
    """Dry runs of every study config with the Slurm profile, started at once (each takes
    seconds of DAG building; together they share the cores); every job planned, whatever
    results the checkout already holds."""
    runs = {study: subprocess.Popen([sys.executable, "-m", "snakemake", "-n", "--forceall", "--profile", "profiles/slurm",
                                     "--configfile", str(REPO / "config" / f"{study}.yaml")],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for study in STUDIES}
    yield {study: run.communicate() + (run.returncode,) for study, run in runs.items()}


def planned_jobs(stdout: str):
    """(rule, resources) of every job a dry run printed."""
    rules = re.findall(r"^rule (\w+):$", stdout, flags=re.MULTILINE)
    resources = [dict(item.split("=", 1) for item in line.split(", "))
                 for line in re.findall(r"^    resources: (.*)$", stdout, flags=re.MULTILINE)]
    assert len(rules) == len(resources) > 0
    return list(zip(rules, resources))


@pytest.mark.parametrize("study", STUDIES)
def test_a_job_is_on_the_gpu_partition_exactly_when_it_asks_for_a_gpu(repo, study, dry_runs):
    profile = yaml.safe_load((repo / "profiles" / "slurm" / "config.yaml").read_text())
    gpu_partition = dict(item.split("=", 1) for item in profile["config"])["gpu_partition"]
    stdout, stderr, returncode = dry_runs[study]
    assert returncode == 0, stderr[-2000:]
    jobs = planned_jobs(stdout)
    wrong = [(rule, res["slurm_partition"], res.get("gpu", "0")) for rule, res in jobs
             if (res["slurm_partition"] == gpu_partition) != (int(res.get("gpu", 0)) > 0)]
    assert not wrong, f"{len(wrong)} jobs of config/{study}.yaml on the wrong partition, e.g. {wrong[:3]}"
    if study == "maestro":  # it asks for GPUs in training and in every activations stage
        on_gpu = {rule for rule, res in jobs if res["slurm_partition"] == gpu_partition}
        assert {"train_model", "activations", "activations_on"} <= on_gpu
