"""Template pitch by harmonic-comb matching: ideal harmonic templates, missing
fundamentals, noise and input checks."""

import numpy as np
import pytest

from lowrank_amt.signal.spectrogram import bin_frequencies
from lowrank_amt.signal.pitch import estimate_template_pitches, harmonic_energy_share

SPEC = {"bins_per_semitone": 3, "n_semitones": 88, "fmin_midi": 21}
FREQS = bin_frequencies(SPEC)
KEYS = np.arange(21, 109)


def harmonic_template(freqs, pitch, amplitudes, width_semitones=0.15):
    """Gaussian lobes (in semitones) at the harmonics of ``pitch`` with the given amplitudes."""
    midi = 69 + 12 * np.log2(freqs / 440.0)
    template = np.zeros(len(freqs))
    for h, a in enumerate(amplitudes, start=1):
        template += a * np.exp(-0.5 * ((midi - pitch - 12 * np.log2(h)) / width_semitones) ** 2)
    return template


def test_ideal_harmonic_templates_get_their_pitch():
    W = np.stack([harmonic_template(FREQS, p, 1 / np.arange(1, 11)) for p in KEYS], axis=1)
    pitches = estimate_template_pitches(W, FREQS)
    assert np.abs(pitches - KEYS).max() < 0.2


def test_off_grid_pitch_is_refined_between_bins():
    # 3 bins per semitone: bins every 1/3 semitone; a pitch 1/6 semitone off the grid
    W = harmonic_template(FREQS, 60 + 1 / 6, [1, 0.6, 0.4, 0.3])[:, None]
    assert estimate_template_pitches(W, FREQS)[0] == pytest.approx(60 + 1 / 6, abs=0.08)


def test_a_missing_fundamental_keeps_the_octave():
    # Low piano notes: no energy at f0, the second partial strongest.
    W = harmonic_template(FREQS, 33, [0, 1, 0.5, 0.4, 0.3, 0.2])[:, None]
    assert round(estimate_template_pitches(W, FREQS)[0]) == 33


def test_noise_flat_and_empty_templates_have_no_pitch():
    rng = np.random.default_rng(0)
    W = np.concatenate([np.abs(rng.normal(size=(len(FREQS), 20))), rng.random((len(FREQS), 20)),
                        np.ones((len(FREQS), 1)), np.zeros((len(FREQS), 1))], axis=1)
    pitches, salience = estimate_template_pitches(W, FREQS, return_salience=True)
    assert np.isnan(pitches).all()
    assert salience.max() < 0.5


def test_coarse_bins_one_per_semitone():
    freqs = bin_frequencies({"bins_per_semitone": 1, "n_semitones": 88, "fmin_midi": 21})
    W = np.stack([harmonic_template(freqs, p, 1 / np.arange(1, 9), 0.4) for p in (30, 50, 70, 95)], axis=1)
    assert np.round(estimate_template_pitches(W, freqs)).tolist() == [30, 50, 70, 95]


def test_linear_stft_bins_with_a_dc_bin():
    freqs = np.fft.rfftfreq(2048, 1 / 22050)  # 0 Hz first, 10.8 Hz apart
    f0s = 440 * 2 ** ((np.array([40, 57, 69, 84]) - 69) / 12)
    # each partial spread over about two bins, as a window's main lobe spreads it
    W = np.stack([sum(np.exp(-0.5 * ((freqs - h * f0) / 10.8) ** 2) / h for h in range(1, 9))
                  for f0 in f0s], axis=1)
    assert np.round(estimate_template_pitches(W, freqs)).tolist() == [40, 57, 69, 84]


def test_f0_range_limits_the_answer():
    W = harmonic_template(FREQS, 100, [1, 0.5])[:, None]
    assert np.isnan(estimate_template_pitches(W, FREQS, fmax=1000.0)[0])


def test_harmonic_energy_share():
    ideal = harmonic_template(FREQS, 48, 1 / np.arange(1, 13))
    rng = np.random.default_rng(1)
    noise = np.abs(rng.normal(size=len(FREQS)))
    W = np.stack([ideal, noise, ideal], axis=1)
    share = harmonic_energy_share(W, FREQS, np.array([48.0, 48.0, np.nan]))
    assert share[0] > 0.99
    # Noise: about the share of bins inside the 12 lobes of +-0.5 semitone (3 bins each).
    midi = 69 + 12 * np.log2(FREQS / 440.0)
    lobes = 48 + 12 * np.log2(np.arange(1, 13))
    covered = (np.abs(midi[:, None] - lobes[None, :]) <= 0.5 + 1e-9).any(axis=1)
    assert share[1] == pytest.approx((noise[covered] ** 2).sum() / (noise ** 2).sum())
    assert share[1] < 0.3
    assert share[2] == 0.0


@pytest.mark.parametrize("W, freqs, message", [
    (np.ones(264), FREQS, "2-D"),
    (np.ones((10, 3)), FREQS, "264 entries"),
    (-np.ones((264, 3)), FREQS, "nonnegative"),
    (np.ones((264, 3)), FREQS[::-1], "increasing"),
])
def test_bad_input_is_refused(W, freqs, message):
    with pytest.raises(ValueError, match=message):
        estimate_template_pitches(W, freqs)
