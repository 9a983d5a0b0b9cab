"""The data stage (``data.smk``): synthesize, download or gather one dataset of the config
into its manifest, with the preparer of its ``kind`` (``datasets/``)."""

from __future__ import annotations

from .. import datasets


def prepare_dataset(spec: dict, manifest_path, sample_rate: int, jobs: int = 1, log=print) -> None:
    datasets.preparer(spec.get("kind")).prepare(spec, manifest_path, sample_rate, jobs=jobs, log=log)
