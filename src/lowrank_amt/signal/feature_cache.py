"""The on-disk feature cache: one folder per dataset and feature set, memory-mappable
.npy files, written by the features stage and read by every other.

The folder holds per track ``<id>.npy`` (features, float16 or float32 by ``dtype``,
``spectrogram.py``) and its frame targets (``targets.py``) ``<id>.roll.npy``,
``<id>.onsets.npy``, ``<id>.offsets.npy``, and ``<id>.class_roll.npy`` (each instrument
class's roll, ``instruments.class_roll``); ``checksums.json`` (each array file's size and
SHA-256, recorded as it was written); ``params.json`` (every parameter that shaped them,
``spectrogram.feature_params``, and their hash) and ``index.csv`` (written last, one row
per track, with the hash). ``read_index`` refuses a cache whose hash does not match its
parameters, or, when given a spec, a cache made with other parameters; ``load_cached``
checks a file against its recorded size and SHA-256 the first time a process reads it
(again if it changes), so a truncated or damaged file is an error naming it, never data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LowrankAmtError
from ..runtime.io import atomic_path, file_record, read_csv, read_json, save_array, write_json
from .spectrogram import feature_params

#: The file of a cache folder recording its array files' ``io.file_record``s.
CHECKSUMS = "checksums.json"


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def read_index(index_path: str | Path, split: str | None = None, spec: dict | None = None,
               sample_rate: int | None = None) -> pd.DataFrame:
    """The feature index with absolute paths, optionally one split.

    When the index records a ``params_hash``, ``params.json`` beside it must hold the same
    hash and parameters that hash to it; with ``spec`` and ``sample_rate`` the cache must
    have been made with them. Otherwise an error names the file and says to re-extract.
    """
    index_path = Path(index_path)
    if not index_path.exists():
        raise LowrankAmtError(f"feature index {index_path} does not exist; extract features first")
    index = read_csv(index_path, "feature index", ("track_id", "split", "features_path"),
                     dtype={"track_id": str, "split": str})
    if "params_hash" in index.columns or spec is not None:
        _check_params(index_path, index, spec, sample_rate)
    for column in [c for c in index.columns if c.endswith("_path") and c != "midi_path"]:
        index[column] = [os.path.normpath(index_path.parent / p) for p in index[column]]
    if split is not None:
        index = index[index["split"] == split].reset_index(drop=True)
    return index


def _check_params(index_path: Path, index: pd.DataFrame, spec, sample_rate) -> None:
    params_path = index_path.parent / "params.json"
    stale = f"; delete {index_path.parent} and extract the features again"
    if not params_path.exists():
        raise LowrankAmtError(f"feature cache {index_path.parent} has no params.json{stale}")
    recorded = read_json(params_path)
    digest = recorded.pop("params_hash", None)
    if digest != params_hash(recorded) or set(index.get("params_hash", [digest])) != {digest}:
        raise LowrankAmtError(f"feature cache {index_path}: parameters in {params_path} do not match "
                              f"the hash its features were made with{stale}")
    if spec is not None:
        wanted = feature_params(spec, sample_rate if sample_rate is not None else recorded["sample_rate"])
        if params_hash(wanted) != digest:
            changed = sorted(k for k in set(wanted) | set(recorded) if wanted.get(k) != recorded.get(k))
            raise LowrankAmtError(f"feature cache {index_path} was made with other parameters "
                                  f"(differ: {', '.join(changed)}){stale}")


def load_cached(path) -> np.ndarray:
    """Memory-map one array of a feature cache, checked against its recorded size and
    SHA-256; a missing, truncated or damaged file (as a killed copy or a full disk
    leaves it) is one error naming it, never used."""
    path = Path(path)
    advice = f"delete {path.parent} and extract the features again"
    try:
        _check_recorded(path, advice)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise LowrankAmtError(f"feature cache file {path} is truncated or corrupt ({exc}); {advice}") from exc


#: (path, size, mtime) of the files this process has checked: a batch loader reads each often.
_checked: set[tuple] = set()


def _check_recorded(path: Path, advice: str) -> None:
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key in _checked:
        return
    checksums = path.parent / CHECKSUMS
    if not checksums.exists():
        raise LowrankAmtError(f"feature cache {path.parent} has no {CHECKSUMS} (it was made by an older "
                              f"version or its extraction did not finish); {advice}")
    recorded = _read_checksums(checksums, checksums.stat().st_mtime_ns).get(path.name)
    if recorded is None:
        raise LowrankAmtError(f"feature cache file {path} is not listed in {checksums}; {advice}")
    if stat.st_size != recorded["bytes"] or file_record(path)["sha256"] != recorded["sha256"]:
        raise LowrankAmtError(f"feature cache file {path} is damaged: its size or SHA-256 differs from those "
                              f"recorded in {CHECKSUMS} when it was written; {advice}")
    _checked.add(key)


def record_checksums(folder) -> None:
    """Record the size and SHA-256 of every .npy file in ``folder``: for a cache whose
    arrays were written by other means than the features stage (which records each file
    as it writes it)."""
    folder = Path(folder)
    write_json(folder / CHECKSUMS, {path.name: file_record(path) for path in sorted(folder.glob("*.npy"))})


@functools.lru_cache(maxsize=64)
def _read_checksums(path: Path, mtime_ns: int) -> dict:
    return read_json(path)


def load_track(row) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one track's features and key-activity roll."""
    return load_cached(row.features_path), load_cached(row.roll_path)


def cache_params(index_path: str | Path) -> dict:
    """The parameters of a feature cache (``params.json`` beside its index)."""
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing; extract the features again")
    return read_json(params_path)


def write_track(folder: Path, track_id: str, features: np.ndarray, targets: dict) -> tuple[dict, dict]:
    """Save one track's features and each of its ``targets`` (name: array) into the cache
    ``folder``; returns the index row's path columns and each file's record (size and
    SHA-256, for ``write_index``)."""
    arrays = {"features_path": (f"{track_id}.npy", features),
              **{f"{name}_path": (f"{track_id}.{name}.npy", array) for name, array in targets.items()}}
    records = {name: save_array(Path(folder) / name, array) for name, array in arrays.values()}
    return {column: name for column, (name, _) in arrays.items()}, records


def write_index(index_path: str | Path, rows: list[dict], params: dict, records: dict) -> pd.DataFrame:
    """Finish a cache: ``checksums.json`` from the tracks' ``records``, ``params.json``
    (``params`` and their hash, which each of ``rows`` carries too) and then the index,
    written last and atomically, so that a cache with an index is whole."""
    folder = Path(index_path).parent
    write_json(folder / CHECKSUMS, records)
    write_json(folder / "params.json", {**params, "params_hash": params_hash(params)})
    index = pd.DataFrame(rows)
    with atomic_path(index_path) as tmp:
        index.to_csv(tmp, index=False)
    return index
