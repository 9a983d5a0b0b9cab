"""Figures of the study (seaborn), written as SVG for the Snakemake report."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on clusters and CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402


def tradeoff_plot(summary: pd.DataFrame, out_path) -> None:
    """Note F (onset) against training time, one point per model variant and dataset."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.scatterplot(data=summary, x="train_seconds", y="note_onset_f_mean", hue="model",
                    style="family", s=120, ax=ax)
    for row in summary.itertuples():
        ax.annotate(f"{row.model}\n({row.dataset}, {row.features})", (row.train_seconds, row.note_onset_f_mean),
                    textcoords="offset points", xytext=(8, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("note F-measure (onset, 50 ms), test mean")
    ax.set_ylim(0, 1)
    low, high = summary["train_seconds"].min(), summary["train_seconds"].max()
    ax.set_xlim(low / 3, high * 3)
    ax.set_title("Transcription quality against training cost")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format=str(out_path).rsplit(".", 1)[-1])
    plt.close(fig)
