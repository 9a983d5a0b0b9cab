"""Decoder and metrics against values computed by hand."""

import numpy as np
import pytest

from lowrank_amt.decode import activations_to_notes, tune_threshold
from lowrank_amt.metrics import frame_metrics, note_metrics, transcription_metrics
from lowrank_amt.notes import piano_roll

FRAME_RATE = 22050 / 512

REF_INTERVALS = np.array([[0.50, 1.20], [0.50, 0.90], [1.40, 2.00], [2.10, 2.60], [2.30, 3.10]])
REF_PITCHES = np.array([60, 64, 67, 48, 72])


def test_note_metrics_hand_computed():
    # Two of three estimates match (one onset 30 ms late, within 50 ms); one is 1 semitone off.
    est_intervals = np.array([[0.53, 1.2], [0.5, 0.9], [1.4, 2.0]])
    est_pitches = np.array([60, 64, 68])
    scores = note_metrics(REF_INTERVALS, REF_PITCHES, est_intervals, est_pitches)
    assert scores["note_onset_p"] == pytest.approx(2 / 3)
    assert scores["note_onset_r"] == pytest.approx(2 / 5)
    assert scores["note_onset_f"] == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))


def test_offset_metric_requires_offsets():
    late_offsets = REF_INTERVALS + np.array([0.0, 0.5])
    scores = note_metrics(REF_INTERVALS, REF_PITCHES, late_offsets, REF_PITCHES)
    assert scores["note_onset_f"] == pytest.approx(1.0)
    assert scores["note_offset_f"] == pytest.approx(0.0)


def test_empty_transcription_scores_zero():
    scores = transcription_metrics(REF_INTERVALS, REF_PITCHES, np.zeros((0, 2)), np.zeros(0))
    assert scores["note_onset_f"] == 0 and scores["frame_f"] == 0


def test_frame_metrics_hand_computed():
    # Reference: one note 0..1 s. Estimate: the same pitch 0.5..1.5 s.
    # On a 10 ms grid: 50 frames correct, 50 missed, 50 false -> P = R = 0.5.
    scores = frame_metrics([[0.0, 1.0]], [69], [[0.5, 1.5]], [69])
    assert scores["frame_p"] == pytest.approx(0.5, abs=0.02)
    assert scores["frame_r"] == pytest.approx(0.5, abs=0.02)
    assert scores["frame_accuracy"] == pytest.approx(1 / 3, abs=0.02)


def test_decoding_the_ground_truth_roll_gives_the_notes_back():
    n_frames = int(3.5 * FRAME_RATE)
    roll = piano_roll(REF_INTERVALS, REF_PITCHES, n_frames, FRAME_RATE).astype(float)
    intervals, pitches, _ = activations_to_notes(roll, FRAME_RATE, threshold=0.5)
    scores = transcription_metrics(REF_INTERVALS, REF_PITCHES, intervals, pitches)
    assert scores["note_onset_f"] == pytest.approx(1.0)
    assert scores["note_offset_f"] == pytest.approx(1.0)
    assert scores["frame_f"] > 0.95


def test_a_shifted_roll_loses_its_onsets_but_keeps_most_frames():
    n_frames = int(3.5 * FRAME_RATE)
    roll = piano_roll(REF_INTERVALS, REF_PITCHES, n_frames, FRAME_RATE).astype(float)
    shifted = np.roll(roll, 4, axis=1)  # 93 ms late: outside the 50 ms onset window
    intervals, pitches, _ = activations_to_notes(shifted, FRAME_RATE, threshold=0.5)
    scores = transcription_metrics(REF_INTERVALS, REF_PITCHES, intervals, pitches)
    assert scores["note_onset_f"] == pytest.approx(0.0)
    assert 0.6 < scores["frame_f"] < 0.95


def test_short_blips_are_dropped_and_velocity_follows_the_peak():
    H = np.zeros((88, 100))
    H[39, 10:40] = 1.0   # a real note (MIDI 60)
    H[39 + 7, 50:51] = 0.5   # one-frame blip
    H[39 + 4, 60:90] = 0.5   # a softer note
    intervals, pitches, velocities = activations_to_notes(H, FRAME_RATE, 0.1, min_note_seconds=0.05)
    assert list(pitches) == [60, 64]
    assert velocities[0] == 127 and velocities[1] == 64
    assert intervals[0] == pytest.approx([10 / FRAME_RATE, 40 / FRAME_RATE])


def test_threshold_is_tuned_on_the_given_tracks_only():
    # Two notes; a spurious activation at 0.3 of the peak. Thresholds above 0.3 are right.
    H = np.zeros((88, 120))
    H[39, 10:40] = 1.0
    H[43, 60:90] = 0.8
    H[50, 20:50] = 0.3
    ref = (np.array([[10, 40], [60, 90]]) / FRAME_RATE, np.array([60, 64]))
    best, scores = tune_threshold([(H, *ref)], [0.1, 0.2, 0.35, 0.9], FRAME_RATE, 0.05)
    assert best == 0.35
    assert dict(scores)[0.35] == pytest.approx(1.0)
    assert dict(scores)[0.1] < 1.0
