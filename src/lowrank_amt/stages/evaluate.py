"""The evaluation stage (``evaluate.smk``), from files to files: ``evaluate`` scores the
test transcriptions against their references with every registered metric
(``evaluation/registry.py``) and the error analysis, per track,
with the labelled oracle-threshold columns; ``assess`` scores a model's dictionary
(``interpretability.py``); ``aggregate`` gathers every run's files into the results
table and the ranked summary (``summary.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import PEDAL_EXTENDED_REFERENCES
from ..decoding.tuning import decoding_grid, mean_note_f
from ..errors import LowrankAmtError
from ..evaluation.interpretability import dictionary_scores, load_dictionary, load_layer_dictionaries, template_table
from ..evaluation import registry
from ..evaluation.metrics import instrument_metrics
from ..evaluation.note_errors import note_errors
from ..evaluation.notes import read_midi_notes, read_reference
from ..instruments import is_instrument_aware, read_class_notes
from ..report.summary import errors_markdown, run_columns, summarize, summary_html, summary_markdown
from ..runtime.io import atomic_path, read_csv, read_json, write_json, write_text
from ..runtime.versions import software_versions
from ..signal.feature_cache import cache_params, read_index
from ..signal.spectrogram import bin_frequencies
from .transcribe import load_activations, track_outputs


def oracle_thresholds(activations_path, index_path, decoding: dict, params: dict, evaluation: dict) -> pd.DataFrame:
    """Per test track, the threshold of the grid that maximises that track's own note
    onset F (other parameters as chosen on validation): the optimistic "oracle" some
    NMF papers report. For a separately labelled column only; never used to decode."""
    arrays = load_activations(activations_path)
    index = read_index(index_path, "test")
    frame_rate = float(index["frame_rate"].iloc[0])
    rows = []
    for row in index.itertuples():
        track = [(track_outputs(arrays, activations_path, "test", row.track_id)["note"],
                  *read_reference(row.midi_path, evaluation)[:2])]
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
        # a transcription is read as the reference is: its own pedal (CC64, where the model
        # predicts one) lengthens its notes as the reference's pedal lengthens the reference's
        reference, transcription = read_reference(row.midi_path, evaluation), read_reference(est_path, evaluation)
        scores = {**registry.score_track(reference, transcription, evaluation["onset_tolerance"],
                                         evaluation["offset_ratio"]),
                  **note_errors(reference, transcription, evaluation["onset_tolerance"])}
        if is_instrument_aware(est_path):  # the transcription names its instruments
            pedal = evaluation.get("pedal_extension", PEDAL_EXTENDED_REFERENCES)
            scores.update(instrument_metrics(read_class_notes(row.midi_path, pedal), read_class_notes(est_path, pedal),
                                             evaluation["onset_tolerance"], evaluation["offset_ratio"]))
        rows.append({"track_id": row.track_id, "duration": row.duration, **scores})
        log(f"{row.track_id}: {registry.log_line(scores)}")
    table = pd.DataFrame(rows)
    if activations_path is not None and decoding_path is not None and decoding is not None:
        params = read_json(decoding_path)["params"]
        oracle = oracle_thresholds(activations_path, index_path, decoding, params, evaluation)
        table = table.merge(oracle, on="track_id", how="left")
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def assess(model_path, index_path, out_path, templates_path, log=print) -> dict:
    """Score a model's dictionary: write the dictionary-level measures (JSON) and the
    per-template table (CSV). The bins come from ``params.json`` beside the index."""
    freqs = bin_frequencies(cache_params(index_path))
    W, labels = load_dictionary(model_path, len(freqs))
    templates = template_table(W, freqs, labels)
    played = np.concatenate([read_midi_notes(r.midi_path)[1] for r in read_index(index_path, "test").itertuples()]
                            or [np.zeros(0, dtype=int)])
    scores = dictionary_scores(templates, played)
    layers = load_layer_dictionaries(model_path)
    if layers:  # untied layers: each layer's dictionary scored as the model's is
        scores["layer_interpretability"] = [dictionary_scores(template_table(W, freqs, labels), played)
                                            ["interpretability"] for W in layers]
        scores["layer_interpretability_min"] = min(scores["layer_interpretability"])
        log("interpretability per layer: " + ", ".join(f"{s:.3f}" for s in scores["layer_interpretability"]))
    with atomic_path(templates_path) as tmp:
        templates.to_csv(tmp, index=False)
    write_json(out_path, {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in scores.items()})
    log(f"interpretability {scores['interpretability']:.3f} (valid {scores['valid_pitch_share']:.2f}, "
        f"harmonicity {scores['harmonicity']:.2f}, coverage {scores['coverage']:.2f})")
    return scores


def aggregate(runs: list[dict], config_hash: str, results_path, summary_path, markdown_path,
              html_path=None, errors_path=None) -> pd.DataFrame:
    """One tidy table (a row per run and test track) and a ranked summary per run, as CSV,
    markdown and (with ``html_path``) a page of its own; with ``errors_path``, the error
    analysis (``summary.errors_markdown``) as markdown.

    ``runs`` lists dicts with keys dataset (the training dataset), features, model, family
    and the paths per_track, train_info, activations_info, decoding_info; optional:
    test_dataset (the dataset of the test tracks; default the training one), supervision,
    train_hours (hours of training audio; else train.json's, else NaN), loss (loss.csv),
    interpretability (JSON of ``assess``; none for deep models: NaN),
    train_benchmark and activations_benchmark (Snakemake benchmark TSVs).
    """
    if not runs:
        raise LowrankAmtError("aggregate: no runs to collect")
    tables = []
    for run in runs:
        table = read_csv(run["per_track"], "per-track metrics", dtype={"track_id": str})
        for key in ("family", "model", "features", "test_dataset", "dataset"):
            table.insert(0, key, run.get(key, run["dataset"]))
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
    write_text(markdown_path, summary_markdown(summary))
    if html_path is not None:
        write_text(html_path, summary_html(summary))
    if errors_path is not None:
        write_text(errors_path, errors_markdown(summary))
    return summary
