"""Evaluation stages, from files to files: decode activations into notes with a
threshold tuned on the validation split, score test transcriptions with mir_eval, and
gather every run into one tidy table and a ranked summary."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__
from .decode import activations_to_notes, tune_threshold
from .errors import LowrankAmtError
from .features import read_index
from .io import atomic_path, read_json, write_json
from .metrics import METRIC_NAMES, transcription_metrics
from .notes import read_midi_notes, write_midi_notes


def decode(activations_path, index_path, decoding: dict, evaluation: dict, midi_dir, info_path, log=print) -> None:
    """Tune the threshold on the validation split only, then write each test track's
    notes as MIDI with it."""
    arrays = np.load(activations_path)
    index = read_index(index_path)
    frame_rate = float(index["frame_rate"].iloc[0])

    def acts(split, track_id):
        key = f"{split}__{track_id}"
        if key not in arrays:
            raise LowrankAmtError(f"{activations_path} lacks activations of {split} track {track_id}")
        return arrays[key].astype(np.float32)

    validation = [(acts("validation", r.track_id), *read_midi_notes(r.midi_path)[:2])
                  for r in index[index["split"] == "validation"].itertuples()]
    threshold, scores = tune_threshold(validation, decoding["thresholds"], frame_rate,
                                       decoding["min_note_seconds"], evaluation["onset_tolerance"])
    log(f"threshold {threshold} chosen on validation (mean note F {max(s for _, s in scores):.3f})")
    midi_dir = Path(midi_dir)
    midi_dir.mkdir(parents=True, exist_ok=True)
    for row in index[index["split"] == "test"].itertuples():
        notes = activations_to_notes(acts("test", row.track_id), frame_rate, threshold, decoding["min_note_seconds"])
        write_midi_notes(midi_dir / f"{row.track_id}.mid", *notes)
    write_json(info_path, {"threshold": threshold, "validation_scores": scores})


def evaluate(midi_dir, index_path, evaluation: dict, out_path, log=print) -> pd.DataFrame:
    """Per-track metrics of the test split's transcriptions against the references."""
    rows = []
    for row in read_index(index_path, "test").itertuples():
        est_path = Path(midi_dir) / f"{row.track_id}.mid"
        if not est_path.exists():
            raise LowrankAmtError(f"transcription {est_path} is missing")
        ref, est = read_midi_notes(row.midi_path), read_midi_notes(est_path)
        scores = transcription_metrics(ref[0], ref[1], est[0], est[1],
                                       evaluation["onset_tolerance"], evaluation["offset_ratio"])
        rows.append({"track_id": row.track_id, "n_ref_notes": len(ref[1]), "n_est_notes": len(est[1]), **scores})
        log(f"{row.track_id}: note F {scores['note_onset_f']:.3f}, frame F {scores['frame_f']:.3f}")
    table = pd.DataFrame(rows)
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def software_versions() -> dict:
    import librosa
    import mir_eval
    return {"lowrank_amt": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "librosa": librosa.__version__, "mir_eval": mir_eval.__version__,
            "python": platform.python_version()}


def aggregate(runs: list[dict], config_hash: str, results_path, summary_path, markdown_path) -> pd.DataFrame:
    """One tidy table (a row per run and test track) and a summary per run.

    ``runs`` lists dicts with keys dataset, features, model, family and the paths
    per_track, train_info, activations_info, decoding_info.
    """
    tables = []
    for run in runs:
        table = pd.read_csv(run["per_track"], dtype={"track_id": str})
        train_info = read_json(run["train_info"])
        activations_info, decoding_info = read_json(run["activations_info"]), read_json(run["decoding_info"])
        for key in ("dataset", "features", "model", "family"):
            table.insert(0, key, run[key])
        table["train_seconds"] = train_info["train_seconds"]
        table["train_cpu_seconds"] = train_info["train_cpu_seconds"]
        table["n_parameters"] = train_info["n_parameters"]
        table["seconds_per_audio_minute"] = activations_info["seconds_per_audio_minute"]
        table["threshold"] = decoding_info["threshold"]
        table["device"] = train_info["device"]
        tables.append(table)
    results = pd.concat(tables, ignore_index=True)
    for key, value in software_versions().items():
        results[f"version_{key}"] = value
    results["config_hash"] = config_hash
    with atomic_path(results_path) as tmp:
        results.to_csv(tmp, index=False)

    keys = ["dataset", "features", "model", "family"]
    summary = results.groupby(keys, sort=False).agg(
        n_tracks=("track_id", "count"),
        **{f"{m}_mean": (m, "mean") for m in METRIC_NAMES},
        **{f"{m}_std": (m, "std") for m in ("note_onset_f", "frame_f")},
        train_seconds=("train_seconds", "first"),
        seconds_per_audio_minute=("seconds_per_audio_minute", "first"),
        threshold=("threshold", "first"),
    ).reset_index().sort_values("note_onset_f_mean", ascending=False)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False)
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(summary_markdown(summary))
    return summary


def summary_markdown(summary: pd.DataFrame) -> str:
    """The README's results table: mean (std) over test tracks."""
    lines = ["| dataset | features | model | note F (onset) | note F (onset+offset) | frame F | train time (s) | s per audio minute |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.dataset} | {r.features} | {r.model} | {r.note_onset_f_mean:.3f} ({r.note_onset_f_std:.3f}) "
                     f"| {r.note_offset_f_mean:.3f} | {r.frame_f_mean:.3f} ({r.frame_f_std:.3f}) "
                     f"| {r.train_seconds:.1f} | {r.seconds_per_audio_minute:.2f} |")
    return "\n".join(lines) + "\n"
