"""The error analysis (note_errors.py): counts checked against notes built by hand."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.evaluation.note_errors import ERROR_NAMES, false_class, note_errors, pooled_error_shares


def notes(rows):
    """(intervals, pitches, velocities) from (onset, offset, pitch, velocity) rows."""
    rows = np.asarray(rows, dtype=float).reshape(-1, 4)
    return rows[:, :2], rows[:, 2].astype(int), rows[:, 3].astype(int)


def test_false_notes_are_classed_by_the_nearest_sounding_reference_note():
    reference = notes([(0.0, 2.0, 60, 80), (0.0, 2.0, 64, 80), (3.0, 4.0, 40, 30)])
    transcription = notes([(0.0, 1.0, 60, 80),   # matched
                           (0.5, 1.0, 61, 80),   # a semitone from 60
                           (0.5, 1.0, 66, 80),   # a tone from 64
                           (1.0, 1.5, 76, 80),   # an octave from 64 (12 from 64, 16 from 60)
                           (1.0, 1.5, 71, 80),   # a fifth from 64 (7), 11 from 60
                           (1.2, 1.5, 64, 80),   # 64 struck again while it sounds
                           (1.5, 1.8, 69, 80),   # 5 from 64: other
                           (2.5, 2.8, 50, 80),   # nothing sounds
                           (2.97, 3.2, 45, 80)])  # 40 starts within the tolerance: 5 from it, other
    counts = note_errors(reference, transcription)
    assert [counts[f"false_{c}"] for c in ("same_key", "semitone", "tone", "fifth", "octave", "other", "silent")] \
        == [1, 1, 1, 1, 1, 2, 1]
    # 64 at 0.0 and 40 at 3.0 are missed: 64 medium, middle, in a chord of 2; 40 soft, low, alone
    assert counts["missed_velocity_medium"] == 1 and counts["missed_velocity_soft"] == 1
    assert counts["reference_velocity_medium"] == 2 and counts["missed_velocity_loud"] == 0
    assert counts["missed_register_middle"] == 1 and counts["missed_register_low"] == 1
    assert counts["reference_polyphony_2-3"] == 2 and counts["missed_polyphony_2-3"] == 1
    assert counts["missed_polyphony_1"] == 1 and counts["reference_polyphony_1"] == 1


@pytest.mark.parametrize("distance, name", [(0, "same_key"), (1, "semitone"), (2, "tone"), (7, "fifth"),
                                            (19, "fifth"), (12, "octave"), (24, "octave"), (3, "other"),
                                            (13, "other")])
def test_false_class_of_a_distance(distance, name):
    assert false_class(60 + distance, [60]) == name
    assert false_class(60 - distance, [60]) == name


def test_the_missed_and_false_counts_agree_with_the_onset_metric():
    """Missed notes are the reference less the onset matches, false notes the
    transcription less them: the same matching as note_metrics."""
    from lowrank_amt.evaluation.metrics import note_metrics
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0, 20, 60))
    reference = notes([(t, t + rng.uniform(0.1, 1), rng.integers(21, 109), rng.integers(1, 128)) for t in onsets])
    jitter = rng.normal(0, 0.04, 60)
    transcription = notes([(t + j, t + j + 0.3, p + rng.choice([0, 0, 0, 1, 12]), 64)
                           for t, j, p in zip(onsets, jitter, reference[1])])
    counts = note_errors(reference, transcription)
    matches = note_metrics(*reference[:2], *transcription[:2])["note_onset_matches"]
    assert sum(counts[f"missed_velocity_{b}"] for b in ("soft", "medium", "loud")) == 60 - matches
    assert sum(v for k, v in counts.items() if k.startswith("false_")) == 60 - matches
    assert sum(counts[f"reference_polyphony_{b}"] for b in ("1", "2-3", "4-5", "6+")) == 60


def test_pooled_shares_and_recalls_sum_the_tracks_counts():
    a = dict.fromkeys(ERROR_NAMES, 0) | {"false_octave": 3, "false_semitone": 1, "reference_register_low": 4,
                                         "missed_register_low": 1, "missed_velocity_soft": 1}
    b = dict.fromkeys(ERROR_NAMES, 0) | {"false_octave": 1, "reference_register_low": 6, "missed_register_low": 4,
                                         "missed_velocity_loud": 4}
    shares = pooled_error_shares(pd.DataFrame([a, b]))
    assert shares["n_false"] == 5 and shares["n_missed"] == 5
    assert shares["false_octave_share"] == pytest.approx(0.8) and shares["false_semitone_share"] == pytest.approx(0.2)
    assert shares["recall_register_low"] == pytest.approx(1 - 5 / 10)
    assert np.isnan(shares["recall_register_high"])  # no reference note there


def test_no_notes_on_either_side_counts_nothing():
    empty = notes([])
    counts = note_errors(empty, empty)
    assert set(counts) == set(ERROR_NAMES) and not any(counts.values())
    assert note_errors(empty, notes([(0, 1, 60, 64)]))["false_silent"] == 1
