"""The report stage (``report.smk``), from files to files: the study's figures
(``report/plots.py``), each run's (``report/run_plots.py``) and the scaling study's
tables (``report/summary.py``) from the stages' outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import LowrankAmtError
from ..decoding.outputs import unpack
from ..evaluation.interpretability import load_dictionary
from ..report import plots, run_plots
from ..report.summary import scaling_markdown
from ..runtime.io import read_csv, read_json, read_npz, write_text
from ..runtime.memory import machine_memory_mb
from ..signal.feature_cache import cache_params, load_track, read_index
from ..signal.pitch import estimate_template_pitches
from ..signal.spectrogram import bin_frequencies

#: ``lowrank-amt plot KIND`` -> the figure of the summary table it draws
SUMMARY_FIGURES = {"tradeoff": plots.tradeoff_plot, "tradeoff-largest": plots.tradeoff_largest_plot,
                   "scaling": plots.scaling_plot, "cost-scaling": plots.cost_scaling_plot,
                   "compute": plots.compute_plot}


def plot(kind: str, summary_path, out_path) -> None:
    """A figure of the summary table (``SUMMARY_FIGURES``); models are compared on their
    own dataset's test split."""
    table = read_csv(summary_path, "summary")
    if "test_dataset" in table:
        table = table[table["test_dataset"] == table["dataset"]]
    SUMMARY_FIGURES[kind](table, out_path)


def scaling_tables(summary_path, out_path, memory_limit_mb: float | None = None) -> None:
    """The scaling study's markdown tables into ``out_path`` ('-': standard output); the
    memory limit defaults to this machine's."""
    write_text(out_path, scaling_markdown(read_csv(summary_path, "summary"), memory_limit_mb or machine_memory_mb()))


def plot_losses(loss_paths: dict, out_path) -> None:
    """Loss curves of several models, ``{model name: loss.csv path}``."""
    run_plots.loss_curves_plot(loss_table(loss_paths), out_path)


def plot_validation(loss_paths: dict, out_path) -> None:
    """``run_plots.validation_curves_plot`` of several runs, ``{label: loss.csv path}``."""
    run_plots.validation_curves_plot(loss_table(loss_paths), out_path)


def plot_velocity(decoding_paths: dict, out_path) -> None:
    """``run_plots.velocity_curves_plot`` of the curves in ``{model name: decoding.json}``."""
    curves = {model: read_json(path).get("params", {}).get("velocity_curve") for model, path in decoding_paths.items()}
    run_plots.velocity_curves_plot(curves, out_path)


def loss_table(loss_paths: dict) -> pd.DataFrame:
    """Read ``{model name: loss.csv path}`` into one tidy table with a ``model`` column."""
    tables = [read_csv(path, "loss file").assign(model=model) for model, path in loss_paths.items()]
    return pd.concat(tables, ignore_index=True)


def plot_dictionary(model_path, index_path, out_path, title: str | None = None) -> None:
    """``run_plots.dictionary_plot`` of a model.npz, on the bins of the feature set beside
    ``index_path`` (its params.json), with pitches estimated by ``pitch.py``."""
    freqs = bin_frequencies(cache_params(index_path))
    W, labels = load_dictionary(model_path, len(freqs))
    run_plots.dictionary_plot(W, freqs, estimate_template_pitches(W, freqs), out_path,
                    title or f"dictionary of {Path(model_path).parent.name}", labels)


def plot_excerpt(activations_path, index_path, out_path, track_id: str | None = None,
                            start_seconds: float = 0.0, seconds: float = 10.0, title: str | None = None) -> None:
    """``run_plots.excerpt_plot`` of one test track (the first in the index by default)."""
    index = read_index(index_path, "test")
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no test tracks")
    rows = index if track_id is None else index[index["track_id"] == str(track_id)]
    if rows.empty:
        raise LowrankAmtError(f"{index_path} has no test track {track_id!r}")
    row = next(rows.itertuples())
    arrays = read_npz(activations_path, "activations", "delete it and run the activations stage again")
    note = unpack(arrays, "test", row.track_id, activations_path)["note"]
    _, roll = load_track(row)
    run_plots.excerpt_plot(note, roll, float(row.frame_rate), out_path, start_seconds, seconds,
                 title or f"{Path(activations_path).parent.name}: test track {row.track_id}")


def plot_stems(model_name, mixture_path, out_path, seconds: float = 10.0, title: str | None = None) -> dict:
    """The stems a model with instrument templates separates from the first ``seconds``
    of a mixture, beside the rendered ones (``<mixture>.stems/``), as a figure; returns
    their scores (``separation.stem_scores``)."""
    from ..datasets.manifest import stem_paths
    from ..evaluation.separation import read_stems, stem_scores
    from ..instruments import CLASSES
    from ..recordings import resolve_model, stem_separator
    from ..runtime.device import pick_device
    from ..signal.audio import load_audio
    from ..signal.spectrogram import compute_features
    model = resolve_model(model_name)
    rate, hop = model.family.frame_grid(model.features)
    paths = {name: path for name, path in stem_paths(mixture_path).items() if name in CLASSES}
    if not paths:
        raise LowrankAmtError(f"mixture {mixture_path} has no rendered stems beside it ({Path(mixture_path).with_suffix('.stems')})")
    whole = load_audio(mixture_path, rate)
    mixture = whole[: int(seconds * rate)]
    references = {name: audio[: len(mixture)] for name, audio in read_stems(paths, rate, len(whole), mixture_path).items()}
    separator = stem_separator(model, model.arrays, pick_device("cpu"))
    estimates = separator(compute_features(mixture, model.features, rate), mixture, rate, hop,
                          bin_frequencies(model.features))
    scores = stem_scores(references, estimates)
    run_plots.stems_plot(references, estimates, rate, hop, out_path, scores,
                     title or f"{Path(mixture_path).stem}: {Path(model_name).parent.name}/{Path(model_name).name} "
                     f"(first {seconds:g} s)")
    return scores
