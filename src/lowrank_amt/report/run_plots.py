"""Figures of one run or a few (seaborn/matplotlib): loss and validation curves, velocity
curves, a dictionary, an excerpt of activations, a transcription, stems; the helpers and
conventions of ``plots.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns

from ..constants import MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from .plots import _require, _save, _theme, plt

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: float) -> str:
    midi = int(round(midi))
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


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
