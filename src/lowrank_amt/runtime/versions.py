"""Versions of the software behind a result, and where and when it was made: every
results row carries them (benchopt stores the same)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from .. import __version__

#: Distributions whose versions every results row carries (basic-pitch's library has
#: moved on from its paper, so its version matters for the comparison).
VERSIONED_PACKAGES = ("torch", "numpy", "librosa", "mir_eval", "tensorly", "basic-pitch", "onnxruntime")


def software_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"lowrank_amt": __version__, "python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            versions[package.replace("-", "_")] = "not installed"
    return versions


#: What ``run_provenance`` records: a column each in the results table.
PROVENANCE_NAMES = ("git_commit", "git_dirty", "cpu", "cpu_capability", "threads", "run_date")


def run_provenance() -> dict:
    """Where and when a result is made: the package's git commit and whether its tree had
    uncommitted changes ("unknown" outside a checkout), the CPU, the vector kernels torch
    dispatches to (the networks' results depend on them; the README says by how much),
    torch's threads and the UTC date."""
    import datetime

    import torch

    return {"git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown"),
            "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "run_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args) -> str:
    """A git command's output in the package's folder, or "unknown"."""
    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).parent), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"
