"""Aggregation: every run's files gathered into one tidy table (a row per run and test
track), a ranked summary per run, and the README's markdown table."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from ..errors import LowrankAmtError
from ..evaluation import registry
from ..evaluation.interpretability import SUMMARY_NAMES
from ..evaluation.metrics import COUNT_NAMES, METRIC_NAMES, pooled_metrics
from ..evaluation.note_errors import ERROR_NAMES, FALSE_CLASSES, MISSED_BINS, pooled_error_shares
from ..runtime.io import read_csv, read_json
from ..runtime.versions import PROVENANCE_NAMES
from .equal_compute import compute_markdown


def read_benchmark(path) -> dict:
    """Wall seconds (``s``), peak resident memory (``max_rss``, MB) and CPU seconds
    (``cpu_time``) of a Snakemake benchmark TSV; the mean over repeats, the peak of
    memory; NaN where Snakemake wrote NA."""
    table = read_csv(path, "benchmark file", ("s", "max_rss"), sep="\t", na_values=["NA", "-"])
    number = lambda c: pd.to_numeric(table[c], errors="coerce") if c in table else pd.Series([np.nan])  # noqa: E731
    return {"s": float(number("s").mean()), "max_rss": float(number("max_rss").max()),
            "cpu_time": float(number("cpu_time").mean())}


def _loss_epochs(path) -> float:
    """Number of epochs in a loss.csv (NaN when it has no ``epoch`` column)."""
    losses = read_csv(path, "loss file")
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
        "form": run.get("form", ""),
        "train_hours": _nan(run.get("train_hours", train_info.get("train_hours"))),
        "train_seconds": train_info["train_seconds"],
        "train_cpu_seconds": train_info.get("train_cpu_seconds", math.nan),
        "n_parameters": _nan(train_info.get("n_parameters")),
        "seconds_per_audio_minute": activations_info["seconds_per_audio_minute"],
        "device": train_info.get("device", ""),
        "memory_grows_with_data": bool(train_info.get("memory_grows_with_data", False)),
        # a fixed budget (the spec's): its training cost stops growing with the data
        "steps_per_epoch": run.get("steps_per_epoch") or 0,
        # where and when it was trained (versions.run_provenance)
        **{k: train_info.get("run", {}).get(k, "") for k in PROVENANCE_NAMES},
        "transcribe_device": activations_info.get("device", ""),
        "threshold": decoding_info["threshold"],
        "validation_note_onset_f": _nan(decoding_info.get("validation_note_onset_f")),
        **{f"decoding_{k}": v for k, v in decoding_info.get("params", {}).items()
           if k not in ("threshold", "velocity_curve")},
    }
    epochs = _loss_epochs(run["loss"]) if run.get("loss") else math.nan
    columns["n_epochs"] = epochs
    columns["train_seconds_per_epoch"] = columns["train_seconds"] / epochs if epochs > 0 else math.nan
    for stage in ("train", "activations"):
        bench = read_benchmark(run[f"{stage}_benchmark"]) if run.get(f"{stage}_benchmark") else {}
        columns[f"{stage}_peak_memory_mb"] = bench.get("max_rss", math.nan)
        columns[f"{stage}_benchmark_seconds"] = bench.get("s", math.nan)
        columns[f"{stage}_benchmark_cpu_seconds"] = bench.get("cpu_time", math.nan)
    separation = activations_info.get("separation", {})
    for name in ("si_sdr", "sdr", "si_sdr_sounding", "oracle_si_sdr", "oracle_sdr", "oracle_templates_si_sdr"):
        columns[f"separation_{name}"] = _nan(separation.get(name))
    scores = read_json(run["interpretability"]) if run.get("interpretability") else {}
    for name in SUMMARY_NAMES:
        columns[name] = _nan(scores.get(name))
    return columns


RUN_KEYS = ["dataset", "test_dataset", "features", "model", "family", "train_hours"]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """A row per run: mean and standard deviation over test tracks of every metric,
    metrics pooled over all notes (``*_pooled``), costs, interpretability; ranked by
    mean note-onset F (``rank`` 1 = best). Error counts (``note_errors.py``) pool into
    each false-note class's share and each bin's recall."""
    per_track = [c for c in results.columns if c.startswith(("instrument_", "class_"))]  # instrument-aware
    metrics = list(dict.fromkeys([*METRIC_NAMES, *registry.columns()]))
    per_track_counts = {*metrics, *COUNT_NAMES, *ERROR_NAMES, *per_track, "track_id", "duration"}
    per_run = [c for c in results.columns
               if c not in RUN_KEYS and c not in per_track_counts and not c.startswith("oracle_")]
    rows = []
    for keys, group in results.groupby(RUN_KEYS, sort=False, dropna=False):
        row = dict(zip(RUN_KEYS, keys))
        row["n_tracks"] = len(group)
        for m in metrics:  # a metric that older per-track tables lack is NaN
            values = group[m] if m in group else pd.Series(np.nan, index=group.index)
            row[f"{m}_mean"] = values.mean()
            row[f"{m}_std"] = values.std(ddof=1) if len(group) > 1 else 0.0
        if {"n_ref_notes", "n_est_notes", "frame_tp"} <= set(group.columns):
            row.update({f"{m}_pooled": v for m, v in pooled_metrics(group).items()})
        if set(ERROR_NAMES) <= set(group.columns) and group[list(ERROR_NAMES)].notna().all(axis=None):
            # (older per-track tables lack them)
            row.update(pooled_error_shares(group))
        for column in ("oracle_note_onset_f", "oracle_threshold", *per_track):
            if column in group:
                row[f"{column}_mean"] = group[column].mean()
        row.update({c: group[c].iloc[0] for c in per_run})
        rows.append(row)
    summary = pd.DataFrame(rows).sort_values("note_onset_f_mean", ascending=False, kind="stable")
    summary.insert(0, "rank", np.arange(1, len(summary) + 1))
    return summary.reset_index(drop=True)


def _fmt(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def test_set_label(row: dict) -> str:
    """A run's test set as the tables name it: "its own" for its dataset's test split."""
    return "its own" if row["test_dataset"] == row["dataset"] else row["test_dataset"]


def summary_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The ranked results table's header and rows of text: mean (standard deviation)
    over test tracks; the oracle column, when present, is labelled as such."""
    oracle = "oracle_note_onset_f_mean" in summary
    header = ["rank", "model", "family", "dataset", "test set", "train h", *(m.label for m in registry.METRICS),
              "note F pooled", "interpretability", "train time (s)",
              "s per audio min", "peak memory (MB)", "parameters", "device"] + \
        (["oracle-threshold note F (not tuned)"] if oracle else [])
    rows = []
    for r in summary.to_dict("records"):
        memory = pd.Series([r.get("train_peak_memory_mb"), r.get("activations_peak_memory_mb")], dtype=float).max()
        cells = [str(r["rank"]), r["model"], r["family"], r["dataset"], test_set_label(r),
                 _fmt(r.get("train_hours"), "g"),
                 *(f"{r[f'{m}_mean']:.3f} ({r[f'{m}_std']:.3f})" for m in registry.columns()),
                 _fmt(r.get("note_onset_f_pooled"), ".3f"), _fmt(r.get("interpretability"), ".2f"),
                 _fmt(r["train_seconds"], ".1f"), _fmt(r["seconds_per_audio_minute"], ".2f"),
                 _fmt(memory, ".0f"), _fmt(r.get("n_parameters"), ".0f"), str(r.get("device") or "–")]
        if oracle:
            cells.append(_fmt(r.get("oracle_note_onset_f_mean"), ".3f"))
        rows.append(cells)
    return header, rows


def summary_markdown(summary: pd.DataFrame) -> str:
    """The README's ranked results table (``summary_cells``) and its provenance lines."""
    header, rows = summary_cells(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines + pick_lines(summary) + provenance_lines(summary)) + "\n"


ERRORS_CAPTION = ("Where the note errors come from (note_errors.py), over every test note pooled: precision and "
                  "recall of note onsets; each class's share of the false notes by the distance to the nearest "
                  "reference note sounding at its onset (%); the recall of the reference notes per velocity, "
                  "register and polyphony bin.")


def error_cells(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The error-analysis table's header and rows of text, in the summary's rank order;
    runs without error counts (older per-track tables) are left out."""
    header = ["model", "test set", "train h", "P", "R", "false notes",
              *(f"false {c.replace('_', ' ')} %" for c in FALSE_CLASSES), "missed notes",
              *(f"R {name} {b}" for name, _, bins in MISSED_BINS for b in bins)]
    rows = []
    for r in summary.to_dict("records"):
        if pd.isna(r.get("n_false", np.nan)):
            continue
        rows.append([r["model"], test_set_label(r), _fmt(r.get("train_hours"), "g"),
                     _fmt(r.get("note_onset_p_pooled"), ".3f"), _fmt(r.get("note_onset_r_pooled"), ".3f"),
                     _fmt(r["n_false"], ".0f"), *(_fmt(100 * r[f"false_{c}_share"], ".0f") for c in FALSE_CLASSES),
                     _fmt(r["n_missed"], ".0f"),
                     *(_fmt(r[f"recall_{name}_{b}"], ".2f") for name, _, bins in MISSED_BINS for b in bins)])
    return header, rows


def errors_markdown(summary: pd.DataFrame) -> str:
    """The error-analysis table (``error_cells``) as markdown, under its caption."""
    header, rows = error_cells(summary)
    lines = [ERRORS_CAPTION, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows]) + "\n"


def summary_html(summary: pd.DataFrame) -> str:
    """The ranked table and the error analysis as a page of its own, which the Snakemake
    report shows (it offers CSV files for download only)."""
    header, rows = summary_cells(summary)
    table = pd.DataFrame(rows, columns=header).to_html(index=False, border=0, classes="ranked")
    header, rows = error_cells(summary)
    if rows:
        table += (f"\n<h3>Note errors</h3>\n<p>{html.escape(ERRORS_CAPTION)}</p>\n"
                  + pd.DataFrame(rows, columns=header).to_html(index=False, border=0, classes="errors"))
    notes = "".join(f"<p>{html.escape(line)}</p>" for line in provenance_lines(summary) if line)
    style = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
             "th,td{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right} th{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Ranked results</title>"
            f"<style>{style}</style></head><body>\n{table}\n{notes}</body></html>\n")


def validation_picks(summary: pd.DataFrame) -> pd.DataFrame:
    """Per model, dataset and test set, the row of the training size that validation note F
    (onset, of the decoder tuned on validation) picks; a test-table maximum is no result."""
    if "validation_note_onset_f" not in summary:
        return summary.iloc[0:0]
    sized = summary.dropna(subset=["train_hours", "validation_note_onset_f"])
    sized = sized[sized.groupby(["model", "dataset", "test_dataset"])["train_hours"].transform("nunique") > 1]
    best = sized.groupby(["model", "dataset", "test_dataset"], sort=False)["validation_note_onset_f"].idxmax()
    return sized.loc[best.to_numpy()]


def pick_lines(summary: pd.DataFrame) -> list[str]:
    """One line naming each model's size picked on validation and its test note F."""
    picks = validation_picks(summary)
    if picks.empty:
        return []
    cells = [f"{r['model']} {r['train_hours']:g} h on {test_set_label(r)} "
             f"(validation {r['validation_note_onset_f']:.3f}, test {r['note_onset_f_mean']:.3f})"
             for r in picks.to_dict("records")]
    return ["", "Sizes picked by validation note F (onset): " + "; ".join(cells) + "."]


def provenance_lines(summary: pd.DataFrame) -> list[str]:
    """One line per machine and commit the runs were trained with (train.json's ``run``)."""
    if not set(PROVENANCE_NAMES) <= set(summary.columns):
        return []
    lines = [""]
    made = summary[list(PROVENANCE_NAMES)].astype(str)
    made = made[~made["git_commit"].isin(["", "nan"])]  # runs trained before provenance was kept
    for (commit, dirty, cpu, kernels, threads), runs in made.groupby(list(PROVENANCE_NAMES[:5]), sort=False):
        dates = sorted(runs["run_date"])
        changes = " with uncommitted changes" if dirty == "True" else ""
        lines.append(f"Trained by commit {str(commit)[:10]}{changes} on {cpu} ({kernels} kernels, threads: {threads}), "
                     f"{dates[0][:10]} to {dates[-1][:10]} (rows: {len(runs)}).")
    return lines if len(lines) > 1 else []


def memory_limit_hours(hours, peak_mb, limit_mb: float) -> float:
    """The hours of training audio at which the least-squares line of peak memory on
    hours reaches ``limit_mb``: where a model whose memory grows with the data (full
    batch) stops fitting. Infinite when memory does not grow; NaN with under two sizes."""
    hours, peak_mb = np.asarray(hours, dtype=float), np.asarray(peak_mb, dtype=float)
    keep = np.isfinite(hours) & np.isfinite(peak_mb)
    if len(np.unique(hours[keep])) < 2:
        return math.nan
    slope, intercept = np.polyfit(hours[keep], peak_mb[keep], 1)
    return (limit_mb - intercept) / slope if slope > 0 else math.inf


def scaling_markdown(summary: pd.DataFrame, memory_limit_mb: float) -> str:
    """The scaling study's tables: each model's mean note-onset F per training size on
    every test set (the fixed references in one column), then its costs and
    interpretability at its smallest and largest size, the ratio of peak training
    memory between them and, for full-batch models, the hours at which their memory
    would reach ``memory_limit_mb`` (``memory_limit_hours``)."""
    _require_columns(summary, ["model", "family", "train_hours", "test_dataset", "dataset", "note_onset_f_mean"])
    sizes = sorted(summary["train_hours"].dropna().unique())
    header = ["model", "family", "fixed", *[f"{h:g} h" for h in sizes]]
    lines = []
    own_first = summary.assign(_other=summary["test_dataset"] != summary["dataset"]).sort_values("_other", kind="stable")
    for test, rows in own_first.groupby("test_dataset", sort=False):
        name = test if rows["_other"].any() else "of the training dataset"
        lines += [f"Mean note F (onset), test set {name}:", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model, runs in rows.groupby("model", sort=False):
            once = runs[runs["train_hours"].isna()]
            fixed = f"{once['note_onset_f_mean'].iloc[0]:.3f}" if len(once) else ""
            by_size = {h: f"{f:.3f}" for h, f in zip(runs["train_hours"], runs["note_onset_f_mean"]) if h == h}
            cells = [model, runs["family"].iloc[0], fixed, *[by_size.get(h, "") for h in sizes]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    own = summary[summary["test_dataset"] == summary["dataset"]].dropna(subset=["train_hours"])
    header = ["model", "form", "sizes (h)", "train time (s)", "peak memory (MB)", "memory ratio largest / smallest",
              "full batch fits up to (h)", "interpretability"]
    lines += [f"Costs at the smallest and largest size (memory limit {memory_limit_mb / 1024:.0f} GiB):", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, runs in own.sort_values("train_hours").groupby("model", sort=False):
        first, last = runs.iloc[0], runs.iloc[-1]
        form = last.get("form", "")
        form = form if isinstance(form, str) else ""  # a CSV's empty cell reads as NaN
        reach = (memory_limit_hours(runs["train_hours"], runs["train_peak_memory_mb"], memory_limit_mb)
                 if grows_with_data(last) else math.nan)
        pair = lambda c, spec: f"{_fmt(first.get(c, math.nan), spec)} → {_fmt(last.get(c, math.nan), spec)}"  # noqa: E731
        cells = [model, form or "–", f"{first['train_hours']:g} → {last['train_hours']:g}", pair("train_seconds", ".0f"),
                 pair("train_peak_memory_mb", ".0f"),
                 _fmt(last.get("train_peak_memory_mb", math.nan) / first.get("train_peak_memory_mb", math.nan), ".2f"),
                 _fmt(reach, ".0f"), pair("interpretability", ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", *projected_cost_markdown(own), "", *compute_markdown(summary)]) + "\n"


# MAESTRO v3's training split is 159.2 h (config/maestro.yaml's sizes).
PROJECTED_HOURS = (1, 10, 100, 159.2)


def projected_cost_markdown(grown: pd.DataFrame, hours=PROJECTED_HOURS) -> list[str]:
    """Training CPU hours projected to larger training sets: each model's CPU seconds per
    hour of training audio at its largest size (train.json's train_cpu_seconds), times
    ``hours``. Linear in the data, as an epoch is; with the same epochs (early stopping may
    stop sooner). A model on a fixed budget (``steps_per_epoch``) costs at most what it
    cost at its largest size, at any size. Lines of a markdown table."""
    if "train_cpu_seconds" not in grown:
        return []
    header = ["model", "measured at (h)", "CPU s per training hour", *[f"CPU h at {h:g} h" for h in hours]]
    lines = ["Training CPU hours projected from each model's largest size (linearly, but flat on a fixed budget):",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, runs in grown.sort_values("train_hours").groupby("model", sort=False):
        last = runs.iloc[-1]
        if last.get("steps_per_epoch", 0) > 0:
            rate_cell = f"fixed budget of {last['steps_per_epoch']:g} steps an epoch"
            projected = [last["train_cpu_seconds"] / 3600] * len(hours)
        else:
            rate = last["train_cpu_seconds"] / last["train_hours"]
            rate_cell, projected = _fmt(rate, ".0f"), [rate * h / 3600 for h in hours]
        cells = [model, f"{last['train_hours']:g}", rate_cell, *[_fmt(p, ".1f") for p in projected]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def grows_with_data(row) -> bool:
    """Whether a run's training memory grows with its data (its family's answer, from
    train.json; a CSV reads the flag back as text)."""
    return str(row.get("memory_grows_with_data", False)) == "True"


def _require_columns(table: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise LowrankAmtError(f"the summary lacks columns {missing}")
