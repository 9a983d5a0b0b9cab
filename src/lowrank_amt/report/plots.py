"""Figures of a study's summary (seaborn/matplotlib): note F, costs and interpretability
across models and sizes, one file per function, written as SVG for the Snakemake report
(any matplotlib format by the path's suffix); a run's own figures are ``run_plots.py``.

Every function takes tidy DataFrames or arrays (``stages/report.py`` reads them from
the stage outputs) and writes one figure atomically. Conventions: one marker per model
family; models without a dictionary (deep ones) are drawn hollow and grey, never
coloured by an invented interpretability score.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on clusters and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..errors import LowrankAmtError  # noqa: E402
from ..evaluation import registry  # noqa: E402
from ..runtime.io import atomic_path  # noqa: E402

FAMILY_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
def _theme():
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def _save(fig, out_path, layout: bool = True, dpi="figure") -> None:
    if layout:
        fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format=Path(out_path).suffix.lstrip(".") or "svg", dpi=dpi)
    plt.close(fig)


def _require(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise LowrankAmtError(f"{what}: the table lacks columns {missing}")
    if table.empty:
        raise LowrankAmtError(f"{what}: the table is empty")


def _markers(families) -> dict:
    return {f: FAMILY_MARKERS[i % len(FAMILY_MARKERS)] for i, f in enumerate(sorted(set(families)))}


def largest_size(summary: pd.DataFrame) -> pd.DataFrame:
    """Each model's rows at its largest training size (models trained once: their rows)."""
    hours = summary["train_hours"].fillna(-1.0)
    return summary[hours == hours.groupby(summary["model"]).transform("max")]


def tradeoff_largest_plot(summary: pd.DataFrame, out_path) -> None:
    """``tradeoff_plot`` of each model at its largest training size."""
    tradeoff_plot(largest_size(summary), out_path, title="Quality, cost and interpretability at each model's largest size")


def tradeoff_plot(summary: pd.DataFrame, out_path, title: str = "Transcription quality against training cost") -> None:
    """Test scores against training time (log), a panel per registered metric
    (``evaluation/registry.py``), one point per run: marker = family, colour =
    interpretability score (hollow grey: no dictionary), bars = std; pretrained models as
    dashed lines."""
    _require(summary, ["train_seconds", "note_onset_f_mean", "model", "family"], "trade-off plot")
    _theme()
    metrics = registry.METRICS
    columns = min(len(metrics), 4)
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.8 * rows), sharey=True, squeeze=False)
    markers = _markers(summary["family"])
    norm, cmap = matplotlib.colors.Normalize(0, 1), plt.get_cmap("viridis")
    for ax, metric in zip(axes.flat, metrics):
        _tradeoff_panel(ax, summary, metric.column, markers, lambda score: cmap(norm(score)))
        ax.set_ylabel(f"{metric.label} (test mean)")
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker=m, ls="", color="black", markerfacecolor="white", label=f)
               for f, m in markers.items()]
    axes.flat[0].legend(handles=handles, title="family", loc="upper right", fontsize=8, title_fontsize=8)
    fig.suptitle(title)
    colorbar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), pad=0.01,
                            fraction=0.02)
    colorbar.set_label("interpretability score (hollow: no dictionary)")
    _save(fig, out_path, layout=False)


def _tradeoff_panel(ax, summary: pd.DataFrame, metric: str, markers: dict, colour) -> None:
    mean, std = f"{metric}_mean", f"{metric}_std"
    if mean not in summary or summary[mean].isna().all():
        ax.text(0.5, 0.5, f"no run records\n{metric}", ha="center", va="center", transform=ax.transAxes)
        return
    scores = summary["interpretability"] if "interpretability" in summary else pd.Series(np.nan, summary.index)
    for row in summary.assign(_score=scores.values).to_dict("records"):
        x, y, score = row["train_seconds"], row[mean], row["_score"]
        ax.errorbar(x, y, yerr=row.get(std, 0) or 0, color="0.6", lw=1, zorder=1)
        has_dictionary = not (score is None or math.isnan(score))
        ax.scatter(x, y, s=110, marker=markers[row["family"]], zorder=3, linewidths=1.5,
                   facecolors=colour(score) if has_dictionary else "white",
                   edgecolors="black" if has_dictionary else "0.5")
    # A model trained on several sizes: its points joined by a thin line, named once at
    # its largest size (the label of every point would overlap).
    for _, group in summary.groupby(["model", "dataset"] if "dataset" in summary else ["model", "family"]):
        group = group.sort_values("train_seconds")
        ax.plot(group["train_seconds"], group[mean], color="0.75", lw=0.8, zorder=2)
        last = group.iloc[-1]
        sizes = group["train_hours"] if "train_hours" in group else pd.Series([np.nan])
        low, high = sizes.min(), sizes.max()
        hours = "" if pd.isna(high) else f" ({high:g} h)" if low == high else f" ({low:g}–{high:g} h)"
        ax.annotate(f"{last['model']}{hours}", (last["train_seconds"], last[mean]),
                    textcoords="offset points", xytext=(8, -3), fontsize=8)
    ax.set_xscale("log")
    low, high = summary["train_seconds"].min(), summary["train_seconds"].max()
    ax.set_xlim(low / 3, high * 30)  # room for the names at the right
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training time (s, wall clock, log scale)")
    # Pretrained models have no training time here: a dashed line at their note F.
    for row in summary[summary["train_seconds"].isna()].to_dict("records"):
        ax.axhline(row[mean], ls="--", lw=1, color="0.45", zorder=0)
        ax.annotate(f"{row['model']} (pretrained)", (0.01, row[mean]), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(0, 3), fontsize=8, color="0.3")


def scaling_panels() -> list[tuple[str, str]]:
    """The scaling figure's panels: a summary column (``<name>_mean`` and ``_std`` where
    the summary has them) and its axis label; every registered metric, then
    interpretability."""
    return [(m.column, m.label) for m in registry.METRICS] + [("interpretability", "interpretability score")]


def _model_styles(summary: pd.DataFrame) -> tuple[dict, dict]:
    """A colour per model (by name, so the same in every figure) and a marker per family."""
    models = sorted(set(summary["model"]))
    return dict(zip(models, sns.color_palette("tab20", n_colors=len(models)))), _markers(summary["family"])


def _hours_axis(ax, label: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("training audio (hours, log scale)")
    ax.set_ylabel(label)


def scaling_plot(summary: pd.DataFrame, out_path) -> None:
    """Test metrics against hours of training audio (log), a panel per metric of
    ``scaling_panels``: a line per model trained at several sizes, bars = standard
    deviation over test tracks; models trained once (isolated-note templates, pretrained)
    as dashed horizontal lines, the two fixed references. The panel after the last holds
    the legend."""
    _require(summary, ["train_hours", "note_onset_f_mean", "model", "family"], "scaling plot")
    _theme()
    colours, markers = _model_styles(summary)
    grown = summary.dropna(subset=["train_hours"]).sort_values("train_hours")
    fixed = summary[summary["train_hours"].isna()]
    panels = scaling_panels()
    rows = math.ceil((len(panels) + 1) / 3)
    fig, axes = plt.subplots(rows, 3, figsize=(16, 4.25 * rows))
    for ax in axes.flat[len(panels) + 1:]:
        ax.axis("off")
    for ax, (name, label) in zip(axes.flat, panels):
        mean = f"{name}_mean" if f"{name}_mean" in summary else name
        if mean not in summary or summary[mean].isna().all():
            ax.text(0.5, 0.5, f"no run records\n{label}", ha="center", va="center", transform=ax.transAxes)
            continue
        for model, rows in grown.dropna(subset=[mean]).groupby("model", sort=False):
            std = rows[f"{name}_std"] if f"{name}_std" in rows else None
            ax.errorbar(rows["train_hours"], rows[mean], yerr=std, color=colours[model], capsize=2, lw=1.5,
                        marker=markers[rows["family"].iloc[0]], markersize=6, label=model)
        for row in fixed.dropna(subset=[mean]).itertuples():
            ax.axhline(getattr(row, mean), ls="--", lw=1.2, color=colours[row.model], zorder=0,
                       label=f"{row.model} (fixed reference)")
        if not grown.empty:
            _hours_axis(ax, label)
        ax.set_ylim(0, 1.02)
    legend = axes.flat[len(panels)]
    legend.axis("off")
    legend.legend(*axes.flat[0].get_legend_handles_labels(), loc="center", fontsize=8, frameon=False)
    fig.suptitle("Test metrics as training data grows (mean and standard deviation over test tracks)")
    fig.tight_layout()
    _save(fig, out_path, layout=False)


def cost_scaling_plot(summary: pd.DataFrame, out_path, memory_limit_mb: float | None = None) -> None:
    """Training time and peak training memory against hours of training audio (log-log),
    a line per model. Full-batch models' memory lines are extended (dotted) along their
    fitted slope to ``memory_limit_mb`` (default: this machine's memory), drawn as a
    horizontal line: the hours at which full batch stops fitting."""
    from ..runtime.memory import machine_memory_mb
    from .summary import grows_with_data, memory_limit_hours

    _require(summary, ["train_hours", "model", "family"], "cost scaling plot")
    _theme()
    limit = memory_limit_mb or machine_memory_mb()
    data = summary.dropna(subset=["train_hours"]).sort_values("train_hours")
    colours, markers = _model_styles(data if not data.empty else summary)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = (("train_seconds", "training time (s, log scale)"),
              ("train_peak_memory_mb", "peak training memory (MB, log scale)"))
    for ax, (column, label) in zip(axes, panels):
        values = data.dropna(subset=[column]) if column in data else data.iloc[0:0]
        if values.empty:
            ax.text(0.5, 0.5, f"no run records\n{label.split(' (')[0]}", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        extended = 0
        for model, rows in values.groupby("model", sort=False):
            ax.plot(rows["train_hours"], rows[column], color=colours[model], lw=1.5,
                    marker=markers[rows["family"].iloc[0]], markersize=6, label=model)
            if column == "train_peak_memory_mb" and all(grows_with_data(row) for _, row in rows.iterrows()):
                reach = memory_limit_hours(rows["train_hours"], rows[column], limit)
                if math.isfinite(reach) and reach > rows["train_hours"].max():
                    last = rows.iloc[-1]
                    ax.plot([last["train_hours"], reach], [last[column], limit], ls=":", color=colours[model])
                    ax.annotate(f"{model}: ~{reach:.0f} h", (reach, limit), textcoords="offset points",
                                xytext=(-4, -12 - 11 * extended), ha="right", fontsize=8, color=colours[model])
                    extended += 1
        if column == "train_peak_memory_mb":
            ax.axhline(limit, color="0.3", lw=1, ls="--")
            ax.annotate(f"this machine: {limit / 1024:.0f} GiB", (0.01, limit), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=8, color="0.3")
        _hours_axis(ax, label)
        ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle("Training cost as training data grows (dotted: full batch extrapolated to this machine's memory)")
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    _save(fig, out_path, layout=False)


def compute_plot(summary: pd.DataFrame, out_path) -> None:
    """Test note F against training CPU seconds and against parameters (log), a panel each
    (``equal_compute.COSTS``): a line per model through its sizes, the Pareto front of the
    panel's cost as a black step line; a run without that cost (a pretrained model's CPU
    seconds) as a dashed horizontal line."""
    from .equal_compute import COSTS, QUALITY, runs_with_fronts

    _require(summary, ["model", "family", "train_hours", QUALITY], "equal-compute plot")
    _theme()
    runs = runs_with_fronts(summary)
    colours, markers = _model_styles(runs)
    fig, axes = plt.subplots(1, len(COSTS), figsize=(13, 5), sharey=True)
    for ax, (cost, label) in zip(axes, COSTS):
        known = runs.dropna(subset=[cost, QUALITY])
        for model, rows in known.sort_values("train_hours").groupby("model", sort=False):
            ax.plot(rows[cost], rows[QUALITY], color=colours[model], lw=1.2, marker=markers[rows["family"].iloc[0]],
                    markersize=6, label=model)
        front = known[known[f"front_{cost}"]].sort_values(cost)
        if not front.empty:
            ax.step(front[cost], front[QUALITY], where="post", color="black", lw=1, ls="-", zorder=0,
                    label="Pareto front")
        for row in runs[runs[cost].isna()].dropna(subset=[QUALITY]).to_dict("records"):
            ax.axhline(row[QUALITY], ls="--", lw=1, color=colours[row["model"]], zorder=0,
                       label=f"{row['model']} (no {label})")
        if not known.empty:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: no overlapping labels
        ax.set_xlabel(f"{label} (log scale)")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("note F, onset only (test mean)")
    handles = {}
    for ax in axes:  # one legend entry per name across the panels
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=8, frameon=False)
    fig.suptitle("Note F at equal compute: against training CPU seconds and against parameters")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    _save(fig, out_path, layout=False)
