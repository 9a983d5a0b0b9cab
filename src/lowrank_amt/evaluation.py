"""Evaluation stages, from files to files: decode activations into notes with
parameters tuned on the validation split, score test transcriptions with mir_eval, and
gather every run into one tidy table and a ranked summary."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .decode import DEFAULTS, activations_to_notes, mean_note_f, tune_decoding
from .errors import LowrankAmtError
from .features import read_index
from .interpretability import SUMMARY_NAMES
from .io import atomic_path, read_json, write_json
from .metrics import COUNT_NAMES, METRIC_NAMES, pooled_metrics, transcription_metrics
from .notes import read_midi_notes, write_midi_notes

#: ``decoding`` config keys -> ``activations_to_notes`` parameters (each a grid).
GRID_KEYS = {"thresholds": "threshold", "onsets": "onset", "offset_fractions": "offset_fraction",
             "min_note_seconds": "min_note_seconds", "adaptive_seconds": "adaptive_seconds"}


def decoding_grid(decoding: dict) -> dict:
    """The parameter grid of a ``decoding`` config section; a scalar is a one-value grid
    and a missing key keeps the decoder's default."""
    grid = {}
    for key, name in GRID_KEYS.items():
        value = decoding.get(key, DEFAULTS[name])
        grid[name] = list(value) if isinstance(value, (list, tuple)) else [value]
    return grid


def _load_activations(activations_path):
    try:
        return np.load(activations_path)
    except (OSError, ValueError) as exc:
        raise LowrankAmtError(f"activations {activations_path} cannot be read ({exc})") from exc


def _track_activations(arrays, activations_path, split, track_id):
    key = f"{split}__{track_id}"
    if key not in arrays:
        raise LowrankAmtError(f"{activations_path} lacks activations of {split} track {track_id}")
    H = arrays[key].astype(np.float32)
    if H.ndim != 2:
        raise LowrankAmtError(f"{activations_path}: {key} has shape {H.shape}, expected (88, frames)")
    return H


def decode(activations_path, index_path, decoding: dict, evaluation: dict, midi_dir, info_path, log=print) -> None:
    """Tune every decoding parameter on the validation split only, then write each test
    track's notes as MIDI with them. ``info_path`` (decoding.json) records the chosen
    parameters (``params``, and ``threshold`` alone) and every validation trial."""
    arrays = _load_activations(activations_path)
    index = read_index(index_path)
    frame_rate = float(index["frame_rate"].iloc[0])
    validation = [(_track_activations(arrays, activations_path, "validation", r.track_id),
                   *read_midi_notes(r.midi_path)[:2])
                  for r in index[index["split"] == "validation"].itertuples()]
    if not validation:
        raise LowrankAmtError(f"{index_path} has no validation tracks to tune the decoding on")
    params, trials = tune_decoding(validation, decoding_grid(decoding), frame_rate,
                                   evaluation["onset_tolerance"], evaluation["offset_ratio"])
    onset_score = max(t["score"] for t in trials if t["stage"] == "onset")
    log(f"decoding chosen on validation: {params} (mean note onset F {onset_score:.3f})")
    midi_dir = Path(midi_dir)
    midi_dir.mkdir(parents=True, exist_ok=True)
    for row in index[index["split"] == "test"].itertuples():
        notes = activations_to_notes(_track_activations(arrays, activations_path, "test", row.track_id),
                                     frame_rate, **params)
        write_midi_notes(midi_dir / f"{row.track_id}.mid", *notes)
    write_json(info_path, {"params": params, "threshold": params["threshold"],
                           "validation_note_onset_f": onset_score, "validation_trials": trials})


def oracle_thresholds(activations_path, index_path, decoding: dict, params: dict, evaluation: dict) -> pd.DataFrame:
    """Per test track, the threshold of the grid that maximises that track's own note
    onset F (other parameters as chosen on validation): the optimistic "oracle" some
    NMF papers report. For a separately labelled column only; never used to decode."""
    arrays = _load_activations(activations_path)
    index = read_index(index_path, "test")
    frame_rate = float(index["frame_rate"].iloc[0])
    rows = []
    for row in index.itertuples():
        track = [(_track_activations(arrays, activations_path, "test", row.track_id),
                  *read_midi_notes(row.midi_path)[:2])]
        scores = [(mean_note_f(track, frame_rate, {**params, "threshold": t}, "note_onset_f",
                               evaluation["onset_tolerance"], evaluation["offset_ratio"]), -t)
                  for t in decoding_grid(decoding)["threshold"]]
        f, negative_t = max(scores)
        rows.append({"track_id": row.track_id, "oracle_threshold": -negative_t, "oracle_note_onset_f": f})
    return pd.DataFrame(rows)


def evaluate(midi_dir, index_path, evaluation: dict, out_path, log=print,
             activations_path=None, decoding_path=None, decoding: dict | None = None) -> pd.DataFrame:
    """Per-track metrics (and match counts) of the test split's transcriptions against
    the references. With ``activations_path``, ``decoding_path`` (decoding.json) and
    ``decoding``, also the per-track oracle threshold columns ``oracle_*``."""
    rows = []
    for row in read_index(index_path, "test").itertuples():
        est_path = Path(midi_dir) / f"{row.track_id}.mid"
        if not est_path.exists():
            raise LowrankAmtError(f"transcription {est_path} is missing")
        ref, est = read_midi_notes(row.midi_path), read_midi_notes(est_path)
        scores = transcription_metrics(ref[0], ref[1], est[0], est[1],
                                       evaluation["onset_tolerance"], evaluation["offset_ratio"])
        rows.append({"track_id": row.track_id, "duration": row.duration, **scores})
        log(f"{row.track_id}: note F {scores['note_onset_f']:.3f}, note F with offsets "
            f"{scores['note_offset_f']:.3f}, frame F {scores['frame_f']:.3f}")
    table = pd.DataFrame(rows)
    if activations_path is not None and decoding_path is not None and decoding is not None:
        params = read_json(decoding_path)["params"]
        oracle = oracle_thresholds(activations_path, index_path, decoding, params, evaluation)
        table = table.merge(oracle, on="track_id", how="left")
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table


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


def read_benchmark(path) -> dict:
    """Wall seconds (``s``), peak resident memory (``max_rss``, MB) and CPU seconds
    (``cpu_time``) of a Snakemake benchmark TSV; the mean over repeats, the peak of
    memory; NaN where Snakemake wrote NA."""
    try:
        table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LowrankAmtError(f"benchmark file {path} cannot be read ({exc})") from exc
    missing = {"s", "max_rss"} - set(table.columns)
    if missing:
        raise LowrankAmtError(f"benchmark file {path} lacks columns {sorted(missing)}")
    number = lambda c: pd.to_numeric(table[c], errors="coerce") if c in table else pd.Series([np.nan])  # noqa: E731
    return {"s": float(number("s").mean()), "max_rss": float(number("max_rss").max()),
            "cpu_time": float(number("cpu_time").mean())}


def _loss_epochs(path) -> float:
    """Number of epochs in a loss.csv (NaN when it has no ``epoch`` column)."""
    losses = pd.read_csv(path)
    return float(losses["epoch"].nunique()) if "epoch" in losses else math.nan


def _nan(value):
    return math.nan if value is None else value


def run_columns(run: dict) -> dict:
    """The per-run columns of the tidy table (costs, decoding, interpretability) from a
    ``runs`` entry of ``aggregate``."""
    train_info = read_json(run["train_info"])
    activations_info = read_json(run["activations_info"])
    decoding_info = read_json(run["decoding_info"])
    columns = {
        "supervision": run.get("supervision", ""),
        "train_hours": _nan(run.get("train_hours", train_info.get("train_hours"))),
        "train_seconds": train_info["train_seconds"],
        "train_cpu_seconds": train_info.get("train_cpu_seconds", math.nan),
        "n_parameters": _nan(train_info.get("n_parameters")),
        "seconds_per_audio_minute": activations_info["seconds_per_audio_minute"],
        "device": train_info.get("device", ""),
        "transcribe_device": activations_info.get("device", ""),
        "threshold": decoding_info["threshold"],
        **{f"decoding_{k}": v for k, v in decoding_info.get("params", {}).items() if k != "threshold"},
    }
    epochs = _loss_epochs(run["loss"]) if run.get("loss") else math.nan
    columns["n_epochs"] = epochs
    columns["train_seconds_per_epoch"] = columns["train_seconds"] / epochs if epochs > 0 else math.nan
    for stage in ("train", "activations"):
        bench = read_benchmark(run[f"{stage}_benchmark"]) if run.get(f"{stage}_benchmark") else {}
        columns[f"{stage}_peak_memory_mb"] = bench.get("max_rss", math.nan)
        columns[f"{stage}_benchmark_seconds"] = bench.get("s", math.nan)
        columns[f"{stage}_benchmark_cpu_seconds"] = bench.get("cpu_time", math.nan)
    scores = read_json(run["interpretability"]) if run.get("interpretability") else {}
    for name in SUMMARY_NAMES:
        columns[name] = _nan(scores.get(name))
    return columns


RUN_KEYS = ["dataset", "features", "model", "family", "train_hours"]


def aggregate(runs: list[dict], config_hash: str, results_path, summary_path, markdown_path) -> pd.DataFrame:
    """One tidy table (a row per run and test track) and a ranked summary per run.

    ``runs`` lists dicts with keys dataset, features, model, family and the paths
    per_track, train_info, activations_info, decoding_info; optional: supervision,
    train_hours (hours of training audio; else train.json's, else NaN), loss (loss.csv),
    interpretability (JSON of ``interpretability.assess``; none for deep models: NaN),
    train_benchmark and activations_benchmark (Snakemake benchmark TSVs).
    """
    if not runs:
        raise LowrankAmtError("aggregate: no runs to collect")
    tables = []
    for run in runs:
        table = pd.read_csv(run["per_track"], dtype={"track_id": str})
        for key in ("family", "model", "features", "dataset"):
            table.insert(0, key, run[key])
        for key, value in run_columns(run).items():
            table[key] = value
        tables.append(table)
    results = pd.concat(tables, ignore_index=True)
    for key, value in software_versions().items():
        results[f"version_{key}"] = value
    results["config_hash"] = config_hash
    with atomic_path(results_path) as tmp:
        results.to_csv(tmp, index=False)
    summary = summarize(results)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(summary_markdown(summary))
    return summary


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """A row per run: mean and standard deviation over test tracks of every metric,
    metrics pooled over all notes (``*_pooled``), costs, interpretability; ranked by
    mean note-onset F (``rank`` 1 = best)."""
    per_run = [c for c in results.columns
               if c not in RUN_KEYS and c not in METRIC_NAMES and c not in COUNT_NAMES
               and c not in ("track_id", "duration") and not c.startswith("oracle_")]
    rows = []
    for keys, group in results.groupby(RUN_KEYS, sort=False, dropna=False):
        row = dict(zip(RUN_KEYS, keys))
        row["n_tracks"] = len(group)
        for m in METRIC_NAMES:
            row[f"{m}_mean"] = group[m].mean()
            row[f"{m}_std"] = group[m].std(ddof=1) if len(group) > 1 else 0.0
        if set(COUNT_NAMES) <= set(group.columns):
            row.update({f"{m}_pooled": v for m, v in pooled_metrics(group).items()})
        for column in ("oracle_note_onset_f", "oracle_threshold"):
            if column in group:
                row[f"{column}_mean"] = group[column].mean()
        row.update({c: group[c].iloc[0] for c in per_run})
        rows.append(row)
    summary = pd.DataFrame(rows).sort_values("note_onset_f_mean", ascending=False, kind="stable")
    summary.insert(0, "rank", np.arange(1, len(summary) + 1))
    return summary.reset_index(drop=True)


def _fmt(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def summary_markdown(summary: pd.DataFrame) -> str:
    """The README's ranked results table: mean (standard deviation) over test tracks;
    the oracle column, when present, is labelled as such."""
    oracle = "oracle_note_onset_f_mean" in summary
    header = ["rank", "model", "family", "dataset", "train h", "note F (onset)", "note F (onset+offset)",
              "frame F", "note F pooled", "interpretability", "train time (s)", "s per audio min",
              "peak memory (MB)", "parameters"] + (["oracle-threshold note F (not tuned)"] if oracle else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary.to_dict("records"):
        memory = pd.Series([r.get("train_peak_memory_mb"), r.get("activations_peak_memory_mb")], dtype=float).max()
        cells = [str(r["rank"]), r["model"], r["family"], r["dataset"], _fmt(r.get("train_hours"), "g"),
                 f"{r['note_onset_f_mean']:.3f} ({r['note_onset_f_std']:.3f})",
                 f"{r['note_offset_f_mean']:.3f} ({r['note_offset_f_std']:.3f})",
                 f"{r['frame_f_mean']:.3f} ({r['frame_f_std']:.3f})",
                 _fmt(r.get("note_onset_f_pooled"), ".3f"), _fmt(r.get("interpretability"), ".2f"),
                 _fmt(r["train_seconds"], ".1f"), _fmt(r["seconds_per_audio_minute"], ".2f"),
                 _fmt(memory, ".0f"), _fmt(r.get("n_parameters"), ".0f")]
        if oracle:
            cells.append(_fmt(r.get("oracle_note_onset_f_mean"), ".3f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
