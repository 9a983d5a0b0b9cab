"""The evaluation stage, from files to files: score the test transcriptions against
their references with mir_eval (``metrics.py``), per track, and the labelled
oracle-threshold columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .decode import decoding_grid, mean_note_f
from .errors import LowrankAmtError
from .features import read_index
from .io import atomic_path, read_json
from .metrics import transcription_metrics
from .notes import read_midi_notes
from .stages import load_activations, track_outputs


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
                  *read_midi_notes(row.midi_path)[:2])]
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
        ref, est = read_midi_notes(row.midi_path), read_midi_notes(est_path)
        scores = transcription_metrics(ref[0], ref[1], est[0], est[1],
                                       evaluation["onset_tolerance"], evaluation["offset_ratio"])
        rows.append({"track_id": row.track_id, "duration": row.duration, **scores})
        log(f"{row.track_id}: note F {scores['note_onset_f']:.3f}, note F with offsets "
            f"{scores['note_offset_f']:.3f}, frame F {scores['frame_f']:.3f}")
    table = pd.DataFrame(rows)
    if activations_path is not None and decoding_path is not None and decoding is not None:
        params = read_json(decoding_path)["params"]
        oracle = oracle_thresholds(activations_path, index_path, decoding, params, evaluation)
        table = table.merge(oracle, on="track_id", how="left")
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table
