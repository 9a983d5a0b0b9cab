"""Per-epoch validation scoring: the note F that a model in training would reach on the
validation tracks, logged beside the losses (``validation_note_f`` in loss.csv).

Conventions: activations as the activations stage computes them, decoded by the plain
thresholding decoder at the best of ``VALIDATION_THRESHOLDS`` (other decoding
parameters at their defaults), scored with a 50 ms onset tolerance against the tracks'
MIDI references. A small grid (the decoding stage tunes a larger one), so that the
curve follows the model rather than one threshold that suits it.
"""

from __future__ import annotations

from ..constants import ONSET_TOLERANCE
from ..decoding.decode import DEFAULTS as DECODING_DEFAULTS
from ..decoding.tuning import tune_threshold
from ..errors import LowrankAmtError
from ..evaluation.notes import read_midi_notes
from ..signal.feature_cache import load_track, read_index

VALIDATION_THRESHOLDS = (0.05, 0.1, 0.2, 0.3)


def validation_note_f(transcribe, index_path) -> float:
    """Mean note-onset F over the validation tracks of ``transcribe`` (features F x N ->
    activations 88 x N), with the conventions of the module docstring."""
    index = read_index(index_path, "validation")
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no 'validation' tracks to score a model on")
    tracks = [(transcribe(load_track(row)[0]), *read_midi_notes(row.midi_path)[:2]) for row in index.itertuples()]
    best, scores = tune_threshold(tracks, VALIDATION_THRESHOLDS, float(index["frame_rate"].iloc[0]),
                                  DECODING_DEFAULTS["min_note_seconds"], ONSET_TOLERANCE)
    return dict(scores)[best]


def has_references(index_path, split) -> bool:
    rows = read_index(index_path, split)
    return "midi_path" in rows and rows["midi_path"].notna().all() and not rows.empty


def note_f_scorer(index_path, transcriber_of, log=print):
    """A function from what training holds (a dictionary, a network) to the validation
    note F of its transcription, ``transcriber_of(it)`` being that transcription (features
    -> 88 x frames); None where the validation tracks have no MIDI (a hand-made cache of
    the benchmarks or tests)."""
    if not has_references(index_path, "validation"):
        log("validation note F not logged: the validation tracks have no MIDI references")
        return None
    return lambda model: validation_note_f(transcriber_of(model), index_path)
