"""Figures of the study (seaborn/matplotlib), one file per function, written as SVG for
the Snakemake report (any matplotlib format by the path's suffix).

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

from .constants import MIDI_MIN, N_KEYS  # noqa: E402
from .errors import LowrankAmtError  # noqa: E402
from .io import atomic_path  # noqa: E402

FAMILY_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


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


def note_name(midi: float) -> str:
    midi = int(round(midi))
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def largest_size(summary: pd.DataFrame) -> pd.DataFrame:
    """Each model's rows at its largest training size (models trained once: their rows)."""
    hours = summary["train_hours"].fillna(-1.0)
    return summary[hours == hours.groupby(summary["model"]).transform("max")]


def tradeoff_largest_plot(summary: pd.DataFrame, out_path) -> None:
    """``tradeoff_plot`` of each model at its largest training size."""
    tradeoff_plot(largest_size(summary), out_path, title="Quality, cost and interpretability at each model's largest size")


#: The trade-off figure's panels: the field's three note metrics (summary ``<name>_mean``).
TRADEOFF_METRICS = (("note_onset_f", "note F, onset only"), ("note_offset_f", "note F, onset and offset"),
                    ("note_offset_velocity_f", "note F, onset, offset, velocity"))


def tradeoff_plot(summary: pd.DataFrame, out_path, title: str = "Transcription quality against training cost") -> None:
    """Test note F against training time (log), a panel per metric of
    ``TRADEOFF_METRICS``, one point per run: marker = family, colour = interpretability
    score (hollow grey: no dictionary), bars = std; pretrained models as dashed lines."""
    _require(summary, ["train_seconds", "note_onset_f_mean", "model", "family"], "trade-off plot")
    _theme()
    fig, axes = plt.subplots(1, len(TRADEOFF_METRICS), figsize=(6.2 * len(TRADEOFF_METRICS), 4.8), sharey=True)
    markers = _markers(summary["family"])
    norm, cmap = matplotlib.colors.Normalize(0, 1), plt.get_cmap("viridis")
    for ax, (metric, label) in zip(axes, TRADEOFF_METRICS):
        _tradeoff_panel(ax, summary, metric, markers, lambda score: cmap(norm(score)))
        ax.set_ylabel(f"{label} (test mean)")
    handles = [plt.Line2D([], [], marker=m, ls="", color="black", markerfacecolor="white", label=f)
               for f, m in markers.items()]
    axes[0].legend(handles=handles, title="family", loc="upper right", fontsize=8, title_fontsize=8)
    fig.suptitle(title)
    colorbar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, pad=0.01, fraction=0.02)
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


# The scaling figure's panels: a summary column (``<name>_mean`` and ``_std`` where the
# summary has them) and its axis label.
SCALING_PANELS = (("note_onset_f", "note F, onset only"), ("note_offset_f", "note F, onset and offset"),
                  ("note_offset_velocity_f", "note F, onset, offset and velocity"),
                  ("frame_f", "frame F"), ("interpretability", "interpretability score"))


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
    ``SCALING_PANELS``: a line per model trained at several sizes, bars = standard
    deviation over test tracks; models trained once (isolated-note templates, pretrained)
    as dashed horizontal lines, the two fixed references."""
    _require(summary, ["train_hours", "note_onset_f_mean", "model", "family"], "scaling plot")
    _theme()
    colours, markers = _model_styles(summary)
    grown = summary.dropna(subset=["train_hours"]).sort_values("train_hours")
    fixed = summary[summary["train_hours"].isna()]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, (name, label) in zip(axes.flat, SCALING_PANELS):
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
    legend = axes.flat[len(SCALING_PANELS)]  # the panel left over holds the legend
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
    from .memory import machine_memory_mb
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


def velocity_curves_plot(curves: dict, out_path) -> None:
    """The velocity calibration of each model (``velocity.py``), ``{model name: curve or
    None}``: MIDI velocity against the note's activation peak in dB below the track's
    peak, the line with its keys' offsets as a band (5th to 95th percentile over keys);
    a model without a curve is named in the legend as decoded by the peak rule."""
    _theme()
    fig, ax = plt.subplots(figsize=(11, 4.8))
    levels = np.linspace(-60, 0, 61)
    colours = dict(zip(curves, sns.color_palette("tab10", n_colors=max(1, len(curves)))))
    for model, curve in curves.items():
        if curve is None:
            ax.plot([], [], color=colours[model], ls=":", label=f"{model}: no curve (127 x peak)")
            continue
        line = curve["intercept"] + curve["slope"] * levels
        low, high = np.percentile(curve["key_offsets"], [5, 95])
        ax.fill_between(levels, np.clip(line + low, 1, 127), np.clip(line + high, 1, 127), color=colours[model],
                        alpha=0.15, lw=0)
        ax.plot(levels, np.clip(line, 1, 127), color=colours[model],
                label=f"{model}: {curve['slope']:.2f} per dB ({curve['n_notes']} notes)")
    ax.set_xlim(-60, 0)
    ax.set_ylim(0, 130)
    ax.set_xlabel("note's activation peak (dB below the track's largest activation)")
    ax.set_ylabel("MIDI velocity written")
    ax.set_title("Velocity calibration chosen on the validation split (band: per-key offsets, 5-95 %)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    _save(fig, out_path)


def loss_curves_plot(losses: pd.DataFrame, out_path) -> None:
    """Training (and validation) loss per epoch or iteration, a panel per model.

    ``losses`` is tidy: ``model``, ``loss``, ``epoch`` or ``iteration``, optional
    ``split``; rows sharing model, step and split (e.g. one per template) are averaged.
    """
    _require(losses, ["model", "loss"], "loss curves")
    if "epoch" not in losses and "iteration" not in losses:
        raise LowrankAmtError("loss curves: the table needs an 'epoch' or 'iteration' column")
    _theme()
    data = losses.assign(split=losses["split"].fillna("train") if "split" in losses else "train")
    curves = []
    for model, rows in data.groupby("model", sort=False):
        # per model: epochs where it logs them, else iterations
        step = "epoch" if "epoch" in rows and rows["epoch"].notna().any() else "iteration"
        curve = rows.dropna(subset=[step]).groupby(["split", step], as_index=False)["loss"].mean()
        curves.append(curve.rename(columns={step: "step"}).assign(model=model, step_name=step))
    data = pd.concat(curves, ignore_index=True)
    models = list(dict.fromkeys(data["model"]))
    columns = min(3, len(models))
    rows = math.ceil(len(models) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models):
        rows = data[data["model"] == model]
        sns.lineplot(data=rows, x="step", y="loss", hue="split", ax=ax)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel(rows["step_name"].iloc[0])
        ax.set_ylabel("training loss")
        if (rows["loss"] > 0).all():
            ax.set_yscale("log")
            ax.set_ylabel("training loss (log scale)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    fig.suptitle("Training loss curves")
    _save(fig, out_path)


def validation_curves_plot(losses: pd.DataFrame, out_path) -> None:
    """Validation note F against optimizer steps, a line per run (its highest point ringed):
    the curves a training budget is chosen from. ``losses`` is tidy: ``model`` (a run's label), ``steps`` and
    ``validation_note_f`` (loss.csv's validation rows; other rows are left out)."""
    _require(losses, ["model", "steps", "validation_note_f"], "validation curves")
    data = losses.dropna(subset=["steps", "validation_note_f"])
    if data.empty:
        raise LowrankAmtError("validation curves: no row has both steps and validation_note_f "
                              "(loss.csv of a model trained with per-epoch validation scoring)")
    _theme()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.lineplot(data=data, x="steps", y="validation_note_f", hue="model", marker="o", markersize=4, ax=ax)
    best = data.loc[data.groupby("model")["validation_note_f"].idxmax()]
    ax.scatter(best["steps"], best["validation_note_f"], s=90, facecolors="none", edgecolors="black",
               label="highest validation note F", zorder=3)
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("validation note F (onset)")
    ax.legend(fontsize=8)
    ax.set_title("Validation note F against training steps")
    _save(fig, out_path)


def _pitch_axis(ax, lowest_midi: float, highest_midi: float, position, axis: str = "y") -> None:
    """Label a MIDI-pitch axis at the C's, as note names."""
    cs = [m for m in range(int(math.ceil(lowest_midi)), int(highest_midi) + 1) if m % 12 == 0]
    ticks = [position(m) for m in cs]
    labels = [note_name(m) for m in cs]
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks, labels)


def dictionary_plot(W, bin_frequencies, pitches, out_path, title: str = "dictionary", labels=None) -> None:
    """The templates as a heatmap (each scaled to its peak, square-root colour scale),
    sorted by their label (MIDI key, so that a key's several templates stand together)
    where they have one, else by estimated pitch, with the estimated fundamental of each
    marked."""
    W = np.asarray(W, dtype=float)
    freqs = np.asarray(bin_frequencies, dtype=float)
    pitches = np.asarray(pitches, dtype=float)
    if W.ndim != 2 or W.shape[0] != len(freqs) or pitches.shape != (W.shape[1],):
        raise LowrankAmtError(f"dictionary plot: W {W.shape}, {len(freqs)} bin frequencies and "
                              f"{pitches.shape} pitches do not fit together")
    _theme()
    by_pitch = np.where(np.isfinite(pitches), pitches, np.inf)
    keys = by_pitch if labels is None else np.asarray(labels, dtype=float)
    order = np.lexsort((by_pitch, np.where(np.isfinite(keys), keys, np.inf)))
    peaks = W.max(axis=0, keepdims=True)
    image = np.sqrt(np.divide(W, peaks, out=np.zeros_like(W), where=peaks > 0))[:, order]
    bin_midi = 69 + 12 * np.log2(freqs / 440.0)
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.imshow(image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
              extent=(-0.5, W.shape[1] - 0.5, -0.5, len(freqs) - 0.5))
    position = lambda m: np.interp(m, bin_midi, np.arange(len(freqs)))  # noqa: E731
    sorted_pitches = pitches[order]
    valid = np.isfinite(sorted_pitches)
    ax.scatter(np.nonzero(valid)[0], position(sorted_pitches[valid]), s=10, c="cyan", marker="_",
               linewidths=1.5, label="estimated pitch (f0)")
    _pitch_axis(ax, bin_midi[0], bin_midi[-1], position)
    ax.set_ylabel("frequency bin (note names at C)")
    ax.set_xlabel(f"template, sorted by {'key' if labels is not None else 'estimated pitch'} "
                  f"({int((~valid).sum())} without a pitch)")
    ax.set_title(title)
    ax.grid(False)
    ax.legend(loc="upper left", fontsize=8, facecolor="0.2", labelcolor="white")
    _save(fig, out_path)


def excerpt_plot(H, roll, frame_rate: float, out_path, start_seconds: float = 0.0,
                 seconds: float = 10.0, title: str = "test excerpt") -> None:
    """A test excerpt: the model's activations (88 x frames, scaled to their peak, shaded
    by square root) beside
    the ground-truth piano roll, same time and pitch axes."""
    H, roll = np.asarray(H, dtype=float), np.asarray(roll, dtype=float)
    if H.shape[0] != N_KEYS or roll.shape[0] != N_KEYS:
        raise LowrankAmtError(f"excerpt plot: activations {H.shape} and roll {roll.shape} need {N_KEYS} rows")
    n = min(H.shape[1], roll.shape[1])
    a = max(0, int(start_seconds * frame_rate))
    b = min(n, a + max(1, int(seconds * frame_rate)))
    peak = H[:, a:b].max()
    _theme()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    extent = (a / frame_rate, b / frame_rate, MIDI_MIN - 0.5, MIDI_MIN + N_KEYS - 0.5)
    # square-root colour scale: soft notes stay visible beside loud ones
    scaled = np.sqrt(np.clip(H[:, a:b] / (peak if peak > 0 else 1), 0, 1))
    for ax, image, name in ((axes[0], scaled, "activations (scaled to peak, square-root shading)"),
                            (axes[1], roll[:, a:b], "ground-truth piano roll")):
        ax.imshow(image, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                  interpolation="nearest", extent=extent)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.grid(False)
    _pitch_axis(axes[0], MIDI_MIN, MIDI_MIN + N_KEYS - 1, lambda m: m)
    axes[0].set_ylabel("piano key")
    fig.suptitle(title)
    _save(fig, out_path)


def transcription_plot(H, frame_rate: float, notes, out_path, title: str = "transcription") -> None:
    """A transcription: the model's outputs (88 x frames, scaled to their peak, square-root
    shading) with the decoded notes outlined over them."""
    H = np.asarray(H, dtype=float)
    if H.ndim != 2 or H.shape[0] != N_KEYS:
        raise LowrankAmtError(f"transcription plot: outputs {H.shape} need {N_KEYS} rows")
    peak = H.max() if H.size else 0.0
    seconds = H.shape[1] / frame_rate
    _theme()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.imshow(np.sqrt(np.clip(H / (peak if peak > 0 else 1), 0, 1)), origin="lower", aspect="auto",
              cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
              extent=(0, seconds, MIDI_MIN - 0.5, MIDI_MIN + N_KEYS - 0.5))
    intervals, pitches, _ = notes
    for (start, end), pitch in zip(intervals, pitches):
        if start < seconds:
            ax.add_patch(plt.Rectangle((start, pitch - 0.5), min(end, seconds) - start, 1.0, fill=False,
                                       edgecolor="tab:orange", linewidth=0.8))
    _pitch_axis(ax, MIDI_MIN, MIDI_MIN + N_KEYS - 1, lambda m: m)
    ax.set_ylabel("piano key")
    ax.set_xlabel("time (s); notes outlined")
    ax.set_title(title)
    ax.grid(False)
    _save(fig, out_path)


#: Highest frequency (kHz) the stems plot shows.
STEMS_PLOT_KHZ = 4.0


def stems_plot(references: dict, estimates: dict, sample_rate: int, hop: int, out_path, scores: dict | None = None,
               title: str = "separation") -> None:
    """Each class's rendered stem beside the stem a model separated from the mixture:
    log-magnitude STFT spectrograms up to ``STEMS_PLOT_KHZ`` (dB below the class's
    rendered peak, 60 dB range), with each separated stem's SI-SDR in its title when
    ``scores`` are given."""
    import librosa
    names = sorted(references)
    if not names:
        raise LowrankAmtError("stems plot: no stems to show")
    _theme()
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 2.2 * len(names)), sharex=True, sharey=True, squeeze=False)
    for row, name in enumerate(names):
        shown = int(STEMS_PLOT_KHZ * 1000 * 4 * hop / sample_rate) + 1  # the bins up to STEMS_PLOT_KHZ
        spectra = [np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=4 * hop, hop_length=hop))[:shown]
                   for audio in (references[name], estimates.get(name, np.zeros_like(references[name])))]
        peak = max(spectra[0].max(), 1e-9)
        for col, (spectrum, label) in enumerate(zip(spectra, ("rendered", "separated"))):
            ax = axes[row, col]
            ax.imshow(20 * np.log10(np.maximum(spectrum / peak, 1e-3)), origin="lower", aspect="auto",
                      cmap="magma", vmin=-60, vmax=0, interpolation="nearest",
                      extent=(0, spectrum.shape[1] * hop / sample_rate, 0, shown * sample_rate / (4 * hop) / 1000))
            extra = f" (SI-SDR {scores[name]['si_sdr']:.1f} dB)" if col and scores and name in scores else ""
            ax.set_title(f"{name}: {label}{extra}", fontsize=9)
            ax.grid(False)
        axes[row, 0].set_ylabel("kHz")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(title)
    _save(fig, out_path, dpi=60)  # spectrograms compress poorly: a screen's resolution is enough
