"""Every figure renders once on tiny fake data (SVG, and PNG copies to look at)."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.constants import N_KEYS
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.report import plots, run_plots
from lowrank_amt.signal.spectrogram import bin_frequencies

# Set LOWRANK_AMT_PLOT_DIR to keep PNG copies of the figures for a visual check.
LOOK_DIR = os.environ.get("LOWRANK_AMT_PLOT_DIR")


def summary():
    rows = []
    for model, family, interp, base_s, base_f in (("nmf_sup_kl", "nmf", 0.9, 5, 0.7),
                                                  ("nmfd_unsup", "nmfd", 0.55, 40, 0.6),
                                                  ("ntd_semi", "ntd", 0.7, 90, 0.65),
                                                  ("cnn_onsets", "deep", np.nan, 600, 0.85)):
        for hours in (0.1, 1.0, 4.0):
            rows.append({"model": model, "family": family, "dataset": "synth", "test_dataset": "synth",
                         "train_hours": hours, "form": "full_batch" if family == "ntd" else "online_mu",
                         "memory_grows_with_data": family == "ntd",
                         "note_offset_f_mean": 0.3, "note_offset_f_std": 0.05, "frame_f_mean": 0.6,
                         "frame_f_std": 0.05, "interpretability": interp, "train_seconds": base_s * hours * 10,
                         "note_onset_f_mean": min(0.95, base_f + 0.05 * np.log10(hours * 10)),
                         "note_onset_f_std": 0.04, "train_seconds_per_epoch": base_s * hours,
                         "train_peak_memory_mb": base_s * (3 + hours) if family != "nmf" else np.nan})
    return pd.DataFrame(rows)


def render(function, tmp_path, name, *args, **kwargs):
    out = tmp_path / f"{name}.svg"
    function(*args, out, **kwargs)
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    if LOOK_DIR:
        function(*args, Path(LOOK_DIR) / f"{name}.png", **kwargs)
    return text


def test_tradeoff_plot(tmp_path):
    text = render(plots.tradeoff_plot, tmp_path, "tradeoff", summary())
    assert "training time" in text and "interpretability" in text


def test_scaling_and_cost_plots(tmp_path):
    table = pd.concat([summary(), pd.DataFrame([{"model": "basic_pitch", "family": "basic_pitch", "dataset": "synth",
                                                 "test_dataset": "synth", "train_hours": np.nan,
                                                 "note_onset_f_mean": 0.8, "note_onset_f_std": 0.05}])])
    text = render(plots.scaling_plot, tmp_path, "scaling", table)
    assert "basic_pitch (fixed reference)" in text and "interpretability score" in text
    # ntd's memory, 270 MB + 90 MB per hour, reaches a 1000 MB limit at about 8.1 h
    text = render(plots.cost_scaling_plot, tmp_path, "cost_scaling", table, memory_limit_mb=1000)
    assert "ntd_semi: ~8 h" in text
    render(plots.tradeoff_largest_plot, tmp_path, "tradeoff_largest", table)


def test_equal_compute_plot_draws_the_front_and_the_pretrained_reference(tmp_path):
    table = summary().assign(train_cpu_seconds=lambda t: 2 * t["train_seconds"], n_parameters=1000)
    table = pd.concat([table, pd.DataFrame([{"model": "basic_pitch", "family": "basic_pitch", "dataset": "synth",
                                             "test_dataset": "synth", "train_hours": np.nan,
                                             "note_onset_f_mean": 0.8, "n_parameters": 17000}])])
    text = render(plots.compute_plot, tmp_path, "compute", table)
    assert "Pareto front" in text and "basic_pitch (no training CPU s)" in text and "parameters (log scale)" in text


def test_loss_curves(tmp_path):
    epochs = pd.DataFrame([{"model": "nmfd_unsup", "epoch": e, "split": s, "loss": 100 / (e + 1) + (5 if s == "validation" else 0)}
                           for e in range(20) for s in ("train", "validation")])
    iterations = pd.DataFrame([{"model": "nmf_sup_kl", "template": k, "iteration": i, "loss": 10 * (k + 1) / (i + 1)}
                               for k in range(3) for i in range(50)])
    text = render(run_plots.loss_curves_plot, tmp_path, "loss_curves", pd.concat([epochs, iterations], ignore_index=True))
    assert "nmfd_unsup" in text and "nmf_sup_kl" in text and "validation" in text  # both models, both splits


def test_validation_curves_ring_each_run_s_highest_point(tmp_path):
    curves = pd.DataFrame([{"model": f"net@{h} h", "split": split, "steps": 64 * e,
                            "validation_note_f": (0.5 + 0.01 * e * h - 0.001 * e * e) if split == "validation" else None,
                            "loss": 1.0} for h in (1, 10) for e in range(1, 21) for split in ("train", "validation")])
    text = render(run_plots.validation_curves_plot, tmp_path, "validation_curves", curves)
    assert "net@1 h" in text and "net@10 h" in text and "highest validation note F" in text and "optimizer steps" in text
    with pytest.raises(LowrankAmtError, match="no row has both"):
        run_plots.validation_curves_plot(curves.assign(steps=None), tmp_path / "none.svg")


def test_dictionary_and_excerpt(tmp_path):
    freqs = bin_frequencies({"bins_per_semitone": 3, "n_semitones": 88, "fmin_midi": 21})
    midi = 69 + 12 * np.log2(freqs / 440.0)
    pitches = np.r_[np.arange(21, 109, 2), np.nan].astype(float)
    W = np.stack([sum(np.exp(-0.5 * ((midi - p - 12 * np.log2(h)) / 0.2) ** 2) / h for h in range(1, 9))
                  if np.isfinite(p) else np.random.default_rng(0).random(len(freqs)) for p in pitches], axis=1)
    text = render(run_plots.dictionary_plot, tmp_path, "dictionary", W, freqs, pitches)
    assert "estimated pitch (f0)" in text and "C4" in text  # templates drawn on a note-named axis
    render(run_plots.dictionary_plot, tmp_path, "dictionary_by_key", W, freqs, pitches,  # two templates per key
           labels=np.repeat(np.arange(21, 21 + len(pitches) // 2 + 1), 2)[:len(pitches)])
    rng = np.random.default_rng(1)
    roll = np.zeros((N_KEYS, 400))
    for _ in range(30):
        key, start = rng.integers(15, 75), rng.integers(0, 380)
        roll[key, start:start + rng.integers(5, 40)] = 1
    H = np.clip(np.roll(roll, 1, axis=1) * rng.uniform(0.3, 1.0, (N_KEYS, 1)) + 0.05 * rng.random(roll.shape), 0, None)
    text = render(run_plots.excerpt_plot, tmp_path, "excerpt", H, roll, 43.07, seconds=8.0)
    assert text.count("<image") == 2  # the activations and the piano roll, one image each


def test_missing_columns_are_named(tmp_path):
    with pytest.raises(LowrankAmtError, match="train_seconds"):
        plots.tradeoff_plot(pd.DataFrame({"model": ["a"]}), tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()
