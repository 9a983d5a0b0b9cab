"""Velocity calibration (velocity.py) and its fit in the grid decoder, against curves
chosen by hand."""

import numpy as np
import pytest

from lowrank_amt.decoding.tuning import GridDecoder
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.decoding.velocity import KEY_PRIOR_NOTES, fit_curve, levels_db, note_velocities

FRAME_RATE = 50.0


def test_a_curve_on_a_line_in_db_is_recovered():
    rng = np.random.default_rng(0)
    peaks = 10 ** rng.uniform(-2, 0, 300)           # -40 to 0 dB
    pitches = rng.integers(40, 80, 300)
    velocities = 110 + 1.5 * levels_db(peaks)         # no key effect
    curve = fit_curve(peaks, pitches, velocities)
    assert curve["intercept"] == pytest.approx(110, abs=1e-6)
    assert curve["slope"] == pytest.approx(1.5, abs=1e-8)
    assert np.abs(curve["key_offsets"]).max() < 1e-4
    assert (note_velocities(peaks, pitches, curve) == np.clip(np.round(velocities), 1, 127)).all()


def test_key_offsets_are_shrunk_more_on_keys_seen_less():
    rng = np.random.default_rng(1)
    pitches = np.repeat([60, 61, 62], [400, 200, 10])
    peaks = 10 ** rng.uniform(-2, 0, len(pitches))
    # key 61 plays 8 velocities louder than its activations say, key 62 likewise
    velocities = 100 + levels_db(peaks) + 8.0 * (pitches != 60)
    offsets = np.array(fit_curve(peaks, pitches, velocities)["key_offsets"])[pitches - 21]
    seen_often, seen_little = offsets[pitches == 61][0] - offsets[0], offsets[pitches == 62][0] - offsets[0]
    assert 0 < seen_little < seen_often < 8.0
    assert seen_often > 8.0 * 200 / (200 + 2 * KEY_PRIOR_NOTES)  # close to the truth with many notes


def test_no_curve_without_notes_or_without_velocity_spread():
    assert fit_curve(np.ones(5), np.full(5, 60), np.arange(5)) is None           # too few notes
    assert fit_curve(np.ones(50), np.full(50, 60), np.full(50, 80)) is None     # nothing to learn
    assert list(note_velocities([1.0, 0.5, 0.0], [60, 60, 60])) == [127, 64, 1]  # the peak rule


def _track(rng, n_notes=40):
    """Activations whose note peaks are a line in dB of the reference velocities
    (activation = 10 ** ((velocity - 127) / 40)), and those references."""
    H = np.zeros((88, n_notes * 20 + 20))
    starts = np.arange(n_notes) * 20 + 5
    pitches = rng.integers(40, 90, n_notes)
    velocities = rng.integers(20, 127, n_notes)
    for start, pitch, velocity in zip(starts, pitches, velocities):
        H[pitch - 21, start:start + 10] = 10 ** ((velocity - 127) / 40)
    intervals = np.stack([starts, starts + 10], axis=1) / FRAME_RATE
    return {"note": H}, (intervals, pitches, velocities)


def test_the_decoder_fits_the_curve_and_the_velocity_metric_rises():
    rng = np.random.default_rng(2)
    decoder = GridDecoder({"thresholds": [0.001], "offset_fractions": [0.5]},
                          {"onset_tolerance": 0.05, "offset_ratio": 0.2})
    params, _, score = decoder.tune([_track(rng) for _ in range(3)], FRAME_RATE)
    assert score == pytest.approx(1.0)
    assert params["velocity_curve"]["slope"] == pytest.approx(40 / 20, abs=0.02)  # velocity per dB
    outputs, ref = _track(rng)
    calibrated = decoder.notes(outputs, FRAME_RATE, params)
    by_peak = decoder.notes(outputs, FRAME_RATE, {**params, "velocity_curve": None})
    f = [note_metrics(*ref[:2], *est[:2], ref_velocities=ref[2], est_velocities=est[2])["note_offset_velocity_f"]
         for est in (calibrated, by_peak)]
    assert f[0] == pytest.approx(1.0) and f[1] < 0.9
