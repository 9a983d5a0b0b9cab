"""The metrics that the per-track tables, the summaries, the ranked tables and the
figures show: one ``Metric`` line each.

A metric is a pure function ``score(reference, transcription, onset_tolerance,
offset_ratio) -> dict`` of per-track columns, where both note lists are (intervals,
pitches, velocities) as ``notes.read_reference`` gives them; a shown column lies in
[0, 1] (higher is better), as the figures' axes do. Its entry names the column
that the tables and figures show and how they label it. A function that serves several
entries runs once per track, and every column it returns goes into the per-track table
(precision, recall and the match counts that pooling needs beside the F-measures).

To add a metric: its function in a module of ``evaluation/`` and one line in
``METRICS`` (or ``register`` at run time, as a test does). The stages, ``summary.py``
and ``plots.py`` read this list; none of them names a metric of it.

The config's ``evaluation`` section, the tolerances every metric takes and the
evaluation stage's options, is declared here too (``PARAMS``), as a family's keys are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import param
from ..constants import OFFSET_RATIO, ONSET_TOLERANCE, PEDAL_EXTENDED_REFERENCES
from ..param import Param
from .metrics import transcription_metrics

DESCRIPTION = "Tolerances of the note metrics and options of the evaluation stage."
PARAMS = (
    Param("onset_tolerance", ONSET_TOLERANCE, type="number", exclusiveMinimum=0,
          meaning="Onset tolerance (s) of note metrics (mir_eval)."),
    Param("offset_ratio", OFFSET_RATIO, type="number", exclusiveMinimum=0,
          meaning="Offset tolerance ratio of the note-with-offset metric (mir_eval)."),
    Param("pedal_extension", PEDAL_EXTENDED_REFERENCES, type="boolean",
          meaning="Notes released under the sustain pedal (CC64) last until pedal-up or the key's next strike, as "
                  "MAESTRO's evaluations read them, in the references and in transcriptions that carry the pedal "
                  "(Transkun's); affects the metrics with offsets, the frame metrics and the decoding's offset choice, "
                  "not onset F."),
    Param("oracle", True, type="boolean",
          meaning="Also report the per-track oracle threshold (best on each test track), labelled as such and never "
                  "used for decoding."),
    Param("excerpt_seconds", 10, type="number", exclusiveMinimum=0,
          meaning="Length (s) of the activations-versus-piano-roll excerpt figure."),
    Param("excerpt_track", None, type=["string", "null"],
          meaning="Test track shown in the excerpt figure (null = the first)."),
)


def evaluation_defaults() -> dict:
    """The ``evaluation`` section with every default: what a transcription outside a
    study (``lowrank-amt transcribe``, the shipped model's check) scores and decodes with."""
    return param.defaults(PARAMS)


@dataclass(frozen=True)
class Metric:
    """A per-track score: ``column`` of ``score``'s dict, shown as ``label`` in the ranked
    table (mean and standard deviation over test tracks), the log and the figures."""

    column: str
    label: str
    score: Callable[..., dict]


METRICS = [
    Metric("note_onset_f", "note F (onset)", transcription_metrics),
    Metric("note_offset_f", "note F (onset+offset)", transcription_metrics),
    Metric("note_offset_velocity_f", "note F (onset+offset+velocity)", transcription_metrics),
    Metric("frame_f", "frame F", transcription_metrics),
]


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the tables and figures (a column no entry has yet)."""
    if any(m.column == metric.column for m in METRICS):
        raise ValueError(f"a metric of column {metric.column!r} is registered already")
    METRICS.append(metric)
    return metric


def columns() -> list[str]:
    """The shown columns, in the tables' order."""
    return [m.column for m in METRICS]


def score_track(reference, transcription, onset_tolerance: float, offset_ratio: float) -> dict:
    """Every registered metric's columns for one track, each function run once."""
    scores = {}
    for score in dict.fromkeys(m.score for m in METRICS):
        scores.update(score(reference, transcription, onset_tolerance, offset_ratio))
    missing = [m.column for m in METRICS if m.column not in scores]
    if missing:
        raise ValueError(f"no metric function returned the columns {missing}")
    return scores


def log_line(scores: dict) -> str:
    """The stage's per-track line: each shown metric with its label."""
    return ", ".join(f"{m.label} {scores[m.column]:.3f}" for m in METRICS)
