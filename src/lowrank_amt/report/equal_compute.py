"""The equal-compute view of a study: every trained run's test note F against what its
training cost (CPU seconds, from train.json's ``train_cpu_seconds``) and against its size
(``n_parameters``), with the Pareto front of each marked.

Conventions: a run is one model at one training size (or trained once: isolated-note
templates), on its own dataset's test split. A run is on the front of (cost, note F) when
no other run costs no more and scores at least as well, strictly better in one of the
two; ties in both are all on it. A run without the cost (a pretrained model has no
training CPU seconds here) is never on that cost's front; such runs are listed last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: the two costs the view is drawn against: summary column, label
COSTS = (("train_cpu_seconds", "training CPU s"), ("n_parameters", "parameters"))
QUALITY = "note_onset_f_mean"


def pareto_front(cost, quality) -> np.ndarray:
    """Whether each point (cost, quality) is on the Pareto front of low cost and high
    quality (the module's convention); a point with a NaN is never on it."""
    cost, quality = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    valid = np.isfinite(cost) & np.isfinite(quality)
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        no_worse = valid & (cost <= cost[i]) & (quality >= quality[i])
        better = (cost < cost[i]) | (quality > quality[i])
        on_front[i] = not (no_worse & better).any()
    return on_front


def runs_with_fronts(summary: pd.DataFrame) -> pd.DataFrame:
    """Every run on its own test split, by training CPU seconds (runs without last), with
    a boolean column ``front_<cost>`` per cost of ``COSTS``."""
    runs = summary[summary["test_dataset"] == summary["dataset"]] if "test_dataset" in summary else summary
    runs = runs.copy()
    for column, _ in COSTS:
        if column not in runs:
            runs[column] = np.nan
        runs[f"front_{column}"] = pareto_front(runs[column], runs[QUALITY])
    return runs.sort_values(["train_cpu_seconds", "model", "train_hours"], kind="stable", na_position="last")


def compute_markdown(summary: pd.DataFrame) -> list[str]:
    """Lines of the equal-compute table: every run (``runs_with_fronts``) with its CPU
    seconds, parameters and test note F, marked where it is on a front."""
    header = ["model", "family", "size (h)", "training CPU s", "parameters", "note F (onset)",
              "front: CPU s", "front: parameters"]
    lines = ["Note F at equal compute: every run by training CPU seconds (front: on the Pareto front of note F "
             "against that cost, no other run costing no more and scoring at least as well):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in runs_with_fronts(summary).to_dict("records"):
        size = "fixed" if pd.isna(row["train_hours"]) else f"{row['train_hours']:g}"
        cells = [row["model"], row["family"], size, _number(row["train_cpu_seconds"], ".0f"),
                 _number(row["n_parameters"], ",.0f"), _number(row[QUALITY], ".3f"),
                 *["yes" if row[f"front_{c}"] else "" for c, _ in COSTS]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _number(value, spec: str) -> str:
    return "–" if value is None or not np.isfinite(float(value)) else format(float(value), spec)
