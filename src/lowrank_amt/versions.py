"""Versions of the software behind a result: every results row carries them."""

from __future__ import annotations

import platform

from . import __version__

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
