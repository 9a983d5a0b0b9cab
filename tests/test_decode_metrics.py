"""Decoder and metrics against values computed by hand."""

import mir_eval
import numpy as np
import pytest

from lowrank_amt.decoding.decode import activations_to_notes
from lowrank_amt.decoding.tuning import tune_threshold
from lowrank_amt.evaluation.metrics import frame_metrics, note_metrics, transcription_metrics
from lowrank_amt.signal.targets import frame_targets

FRAME_RATE = 22050 / 512

REF_INTERVALS = np.array([[0.50, 1.20], [0.50, 0.90], [1.40, 2.00], [2.10, 2.60], [2.30, 3.10]])
REF_PITCHES = np.array([60, 64, 67, 48, 72])
REF_VELOCITIES = np.array([40, 60, 80, 100, 120])
REF_NOTES = (REF_INTERVALS, REF_PITCHES, REF_VELOCITIES)


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


def test_velocity_metric_ignores_the_velocities_scale_but_not_their_order():
    # mir_eval maps the estimates' velocities onto the references' by a line per track:
    # a rescaled copy of the references scores as the notes do with offsets ...
    scaled = note_metrics(*REF_NOTES[:2], REF_INTERVALS, REF_PITCHES, ref_velocities=REF_VELOCITIES,
                          est_velocities=REF_VELOCITIES / 2 + 30)
    assert scaled["note_offset_velocity_f"] == pytest.approx(1.0) == scaled["note_offset_f"]
    # ... while shuffled velocities lose the notes the line cannot map within 0.1
    shuffled = np.array([120, 40, 100, 60, 80])
    scores = note_metrics(*REF_NOTES[:2], REF_INTERVALS, REF_PITCHES, ref_velocities=REF_VELOCITIES,
                          est_velocities=shuffled)
    p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
        REF_INTERVALS, mir_eval.util.midi_to_hz(REF_PITCHES), REF_VELOCITIES,
        REF_INTERVALS, mir_eval.util.midi_to_hz(REF_PITCHES), shuffled)
    assert (scores["note_offset_velocity_p"], scores["note_offset_velocity_f"]) == pytest.approx((p, f), abs=1e-12)
    assert scores["note_offset_velocity_f"] < 0.5
    assert "note_offset_velocity_f" not in note_metrics(*REF_NOTES[:2], REF_INTERVALS, REF_PITCHES)


def test_empty_transcription_scores_zero():
    scores = transcription_metrics(REF_NOTES, (np.zeros((0, 2)), np.zeros(0), np.zeros(0)))
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
    roll = frame_targets(REF_INTERVALS, REF_PITCHES, n_frames, FRAME_RATE)["roll"].astype(float)
    scores = transcription_metrics(REF_NOTES, activations_to_notes(roll, FRAME_RATE, threshold=0.5))
    assert scores["note_onset_f"] == pytest.approx(1.0)
    assert scores["note_offset_f"] == pytest.approx(1.0)
    assert scores["frame_f"] > 0.95


def test_a_shifted_roll_loses_its_onsets_but_keeps_most_frames():
    n_frames = int(3.5 * FRAME_RATE)
    roll = frame_targets(REF_INTERVALS, REF_PITCHES, n_frames, FRAME_RATE)["roll"].astype(float)
    shifted = np.roll(roll, 4, axis=1)  # 93 ms late: outside the 50 ms onset window
    scores = transcription_metrics(REF_NOTES, activations_to_notes(shifted, FRAME_RATE, threshold=0.5))
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


# --- peak-picking onsets, offsets at a fraction of the note's peak, pooling ---------

from lowrank_amt.decoding.tuning import tune_decoding  # noqa: E402
from lowrank_amt.evaluation.metrics import pooled_metrics  # noqa: E402


def decaying_note(n_frames, start, end, peak, rate=0.03, release=0.5):
    """A piano-like activation: jumps to ``peak`` at ``start``, decays, falls fast after ``end``."""
    h = np.zeros(n_frames)
    t = np.arange(start, n_frames)
    h[start:] = peak * np.exp(-rate * (t - start))
    h[end:] *= np.exp(-release * np.arange(n_frames - end))
    return h


@pytest.mark.parametrize("onset", ["threshold", "peaks", "adaptive"])
def test_every_onset_method_decodes_the_ground_truth_roll(onset):
    n_frames = int(3.5 * FRAME_RATE)
    roll = frame_targets(REF_INTERVALS, REF_PITCHES, n_frames, FRAME_RATE)["roll"].astype(float)
    intervals, pitches, _ = activations_to_notes(roll, FRAME_RATE, 0.5, onset=onset)
    assert note_metrics(REF_INTERVALS, REF_PITCHES, intervals, pitches)["note_onset_f"] == pytest.approx(1.0)


def test_peak_onsets_split_a_restruck_key():
    # Key 60 struck at frame 10 and again at 40 while still sounding above any threshold.
    h = np.maximum(decaying_note(100, 10, 80, 1.0), decaying_note(100, 40, 80, 0.9))
    H = np.zeros((88, 100))
    H[39] = h
    starts_threshold = activations_to_notes(H, FRAME_RATE, 0.1, onset="threshold")[0][:, 0]
    starts_peaks = activations_to_notes(H, FRAME_RATE, 0.1, onset="peaks")[0][:, 0]
    assert len(starts_threshold) == 1
    np.testing.assert_allclose(starts_peaks, [10 / FRAME_RATE, 40 / FRAME_RATE])


def test_offset_at_a_fraction_of_each_notes_peak():
    # A loud and a soft note, both released at frame 60: a threshold relative to the
    # track's peak ends the soft one early; a fraction of each note's peak does not.
    H = np.zeros((88, 120))
    H[39] = decaying_note(120, 10, 60, 1.0)
    H[43] = decaying_note(120, 10, 60, 0.15)
    plain = activations_to_notes(H, FRAME_RATE, 0.05)
    relative = activations_to_notes(H, FRAME_RATE, 0.05, offset_fraction=0.1)
    soft_plain = plain[0][plain[1] == 64][0, 1] * FRAME_RATE
    assert soft_plain < 50  # ended during its decay, 10 frames early or more
    ends = relative[0][:, 1] * FRAME_RATE
    assert np.all(np.abs(ends - 60) <= 5)


def test_a_brief_dip_does_not_end_a_note():
    h = decaying_note(100, 10, 70, 1.0, rate=0.01)
    h[30:32] = 0.25  # two frames of interference, under the offset level, over the threshold
    H = np.zeros((88, 100))
    H[39] = h
    intervals, _, _ = activations_to_notes(H, FRAME_RATE, 0.1, offset_fraction=0.3)
    assert len(intervals) == 1
    assert 70 <= intervals[0, 1] * FRAME_RATE <= 75


def test_tune_decoding_picks_what_fits_the_tracks():
    # Two notes released at frames 60 and 100, and a spurious activation at 0.3 of the peak.
    H = np.zeros((88, 130))
    H[39] = decaying_note(130, 10, 60, 1.0, rate=0.01, release=0.2)
    H[43] = decaying_note(130, 70, 100, 0.6, rate=0.01, release=0.2)
    H[50, 20:50] = 0.3
    ref = (np.array([[10, 60], [70, 100]]) / FRAME_RATE, np.array([60, 64]))
    params, trials = tune_decoding([(H, *ref)], {"threshold": [0.1, 0.35], "onset": ["threshold", "peaks"],
                                                 "offset_fraction": [0.01, 0.3, 0.9]}, FRAME_RATE)
    assert params["threshold"] == 0.35 and params["offset_fraction"] == 0.3
    assert {t["stage"] for t in trials} == {"onset", "offset"}
    assert len(trials) == 2 * 2 + 3
    offset_scores = {t["offset_fraction"]: t["score"] for t in trials if t["stage"] == "offset"}
    assert offset_scores[0.3] == pytest.approx(1.0) and offset_scores[0.9] < 1.0 and offset_scores[0.01] < 1.0


def test_bad_decoding_parameters_are_refused():
    with pytest.raises(ValueError, match="onset"):
        activations_to_notes(np.ones((88, 5)), FRAME_RATE, 0.5, onset="magic")
    with pytest.raises(ValueError, match="threshold"):
        activations_to_notes(np.ones((88, 5)), FRAME_RATE, 1.5)
    with pytest.raises(ValueError, match="unknown decoding parameters"):
        tune_decoding([], {"treshold": [0.1]}, FRAME_RATE)


def test_pooled_metrics_weigh_every_note():
    # Track A: 1 of 1 reference note found (F 1); track B: 1 of 9 found, 1 estimate (P 1).
    a = note_metrics([[0, 1]], [60], [[0, 1]], [60], ref_velocities=[80], est_velocities=[80])
    b = note_metrics(np.array([[i, i + 0.5] for i in range(9)]), [60] * 9, [[0, 0.5]], [60],
                     ref_velocities=[70] * 9, est_velocities=[30])
    counts = {k: [a.get(k, 0), b.get(k, 0)] for k in a if k.endswith("matches") or k.startswith("n_")}
    counts.update({"frame_tp": [0, 0], "frame_n_ref": [1, 1], "frame_n_est": [1, 1]})
    pooled = pooled_metrics(counts)
    assert pooled["note_onset_p"] == pytest.approx(2 / 2)
    assert pooled["note_onset_r"] == pytest.approx(2 / 10)
    assert pooled["note_onset_f"] == pytest.approx(2 * 0.2 / 1.2)
    assert pooled["note_offset_velocity_f"] == pytest.approx(2 * 0.2 / 1.2)
    assert pooled["frame_f"] == 0.0


def test_frame_counts_match_the_rates():
    scores = frame_metrics([[0.0, 1.0]], [69], [[0.5, 1.5]], [69])
    assert scores["frame_tp"] / scores["frame_n_est"] == pytest.approx(scores["frame_p"])
    assert scores["frame_tp"] / scores["frame_n_ref"] == pytest.approx(scores["frame_r"])


def test_a_release_slope_ends_a_note_where_its_activation_falls_steeply():
    # A note at full level for 10 frames, decaying 0.5 dB per frame (21.5 dB/s) to frame
    # 60, then released: 20 dB per frame. The 0.1 s span is 4 frames here; 100 dB/s is
    # 9.3 dB over it. The first 4-frame span falling more than that starts at frame 57
    # (1.5 + 20 dB), and the note ends one frame into it: frames 0..57.
    t = np.arange(120)
    level = np.where(t < 10, 0.0, -0.5 * (t - 10))
    level = np.where(t > 60, level[60] - 20.0 * (t - 60), level)
    H = np.zeros((88, 120))
    H[39] = 10 ** (level / 20)
    released = activations_to_notes(H, FRAME_RATE, 0.1, offset_fraction=0.001, release_slope=100.0)
    assert released[0].tolist() == [[0.0, 58 / FRAME_RATE]]
    # without the slope, the fraction of the peak ends it: below -60 dB from frame 62
    assert activations_to_notes(H, FRAME_RATE, 0.1, offset_fraction=0.001)[0][0, 1] == 62 / FRAME_RATE
    # a release right after the peak shortens a note to the shortest kept, never drops it
    early = H.copy()
    early[39, 2:] = 10 ** ((-30.0 * np.arange(118)) / 20)
    assert activations_to_notes(early, FRAME_RATE, 0.001, offset_fraction=0.001, min_note_seconds=0.05,
                                release_slope=100.0)[0].tolist() == [[0.0, 2 / FRAME_RATE]]
    # the decay alone, at any slope below the release's, never ends it early
    decay = H.copy()
    decay[39, 61:] = 10 ** (np.maximum(-0.5 * (t[61:] - 10), -200) / 20)
    assert activations_to_notes(decay, FRAME_RATE, 0.1, offset_fraction=0.001, release_slope=100.0)[0][0, 1] \
        == activations_to_notes(decay, FRAME_RATE, 0.1, offset_fraction=0.001)[0][0, 1]
