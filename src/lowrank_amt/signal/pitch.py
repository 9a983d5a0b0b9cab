"""The pitch of a spectral template, by harmonic-comb matching.

A template is a nonnegative spectrum on bins with known centre frequencies (a CQT
column: log-spaced; an STFT column: linear, from 0 Hz). For every candidate
fundamental f0 (every third of a semitone within [``fmin``, ``fmax``] and the bins'
range) a comb is built: a triangular lobe at each harmonic h * f0,
h = 1..``n_harmonics``, of half-width ``tolerance_semitones`` and weight
``harmonic_decay ** (h - 1)``. The salience of f0 is the cosine similarity between the
template and its comb, in [0, 1]. The pitch is the most salient f0 (refined between
bins by a parabola through the neighbouring saliences), or NaN when its salience is
below ``min_salience``.

Why a normalised comb: a comb an octave too low has empty teeth between the
template's harmonics, and one an octave too high misses the odd harmonics; both lower
the cosine, so octave errors are penalised from both sides. White noise matches no
comb well (cosine ~0.3 for the defaults).
"""

from __future__ import annotations

import numpy as np

#: Range of fundamentals considered (Hz): A0 to just above C8.
F0_MIN = 27.5
F0_MAX = 4500.0

#: Candidate fundamentals per semitone.
F0_STEPS_PER_SEMITONE = 3


def _semitones(frequencies) -> np.ndarray:
    """MIDI numbers of frequencies (Hz); -inf for 0 Hz (an STFT's DC bin)."""
    with np.errstate(divide="ignore"):
        return 12.0 * np.log2(np.asarray(frequencies, dtype=float) / 440.0) + 69.0


def _check(W, bin_frequencies) -> tuple[np.ndarray, np.ndarray]:
    W = np.asarray(W, dtype=float)
    freqs = np.asarray(bin_frequencies, dtype=float)
    if W.ndim != 2:
        raise ValueError(f"templates W must be 2-D (bins x templates), got shape {W.shape}")
    if freqs.ndim != 1 or len(freqs) != W.shape[0]:
        raise ValueError(f"bin_frequencies has {freqs.size} entries but W has {W.shape[0]} bins")
    if np.any(~np.isfinite(W)) or np.any(W < 0):
        raise ValueError("templates W must be finite and nonnegative")
    if np.any(freqs < 0) or np.any(np.diff(freqs) <= 0):
        raise ValueError("bin_frequencies must be nonnegative and increasing")
    return W, freqs


def lobe_half_width(bin_frequencies, centres, tolerance_semitones: float) -> np.ndarray:
    """Half-width (semitones) of the lobe at each of ``centres`` (MIDI numbers): the
    tolerance, but at least the local bin spacing, so that coarse bins (low STFT bins,
    one bin per semitone) still catch off-grid harmonics."""
    midi = _semitones(bin_frequencies)
    positive = np.isfinite(midi)
    if positive.sum() < 2:
        return np.full(np.shape(centres), float(tolerance_semitones))
    spacing = np.gradient(midi[positive])
    local = np.interp(centres, midi[positive], spacing)
    return np.maximum(float(tolerance_semitones), local)


def harmonic_comb(f0s, bin_frequencies, n_harmonics: int = 12, harmonic_decay: float = 0.8,
                  tolerance_semitones: float = 0.5, harmonics=None) -> np.ndarray:
    """Combs (len(f0s) x bins): triangular lobes at the harmonics (1..n_harmonics, or the
    given list) of each f0, unit L2 norm per row (all zero if no lobe meets a bin)."""
    midi = _semitones(bin_frequencies)
    harmonics = np.arange(1, n_harmonics + 1) if harmonics is None else np.asarray(harmonics)
    # distance (semitones) from every bin to every harmonic of every f0: (f0, harmonic, bin)
    centres = _semitones(np.outer(np.asarray(f0s, dtype=float), harmonics))
    width = lobe_half_width(bin_frequencies, centres, tolerance_semitones)
    lobes = np.clip(1.0 - np.abs(midi[None, None, :] - centres[:, :, None]) / width[:, :, None], 0.0, None)
    combs = np.einsum("h,fhb->fb", harmonic_decay ** (harmonics - 1.0), lobes)
    norms = np.linalg.norm(combs, axis=1, keepdims=True)
    return np.divide(combs, norms, out=np.zeros_like(combs), where=norms > 0)


def comb_salience(W, bin_frequencies, fmin: float = F0_MIN, fmax: float = F0_MAX,
                  n_harmonics: int = 12, harmonic_decay: float = 0.8,
                  tolerance_semitones: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Candidate f0s (Hz, every 1/3 semitone within [fmin, fmax] and the bins' range)
    and the salience
    (candidates x templates, cosine in [0, 1]) of each for each template."""
    W, freqs = _check(W, bin_frequencies)
    positive = freqs[freqs > 0]
    low, high = max(fmin, positive[0]) if len(positive) else fmin, min(fmax, freqs[-1])
    # a grid of F0_STEPS_PER_SEMITONE per semitone, whatever the bins' spacing (STFT bins
    # are semitones apart at low frequencies)
    steps = np.arange(np.ceil(_semitones(low) * F0_STEPS_PER_SEMITONE),
                      np.floor(_semitones(high) * F0_STEPS_PER_SEMITONE) + 1) / F0_STEPS_PER_SEMITONE
    f0s = 440.0 * 2 ** ((steps - 69.0) / 12.0) if high > low else np.zeros(0)
    combs = harmonic_comb(f0s, freqs, n_harmonics, harmonic_decay, tolerance_semitones)
    norms = np.linalg.norm(W, axis=0)
    unit = np.divide(W, norms, out=np.zeros_like(W), where=norms > 0)
    return f0s, combs @ unit


def estimate_template_pitches(W, bin_frequencies, fmin: float = F0_MIN, fmax: float = F0_MAX,
                              n_harmonics: int = 12, harmonic_decay: float = 0.8,
                              tolerance_semitones: float = 0.5, min_salience: float = 0.5,
                              odd_salience: float = 0.15, return_salience: bool = False):
    """Pitch (fractional MIDI number) of each template of ``W`` (bins x templates).

    Returns a (K,) float array, NaN where the best comb's salience is below
    ``min_salience`` (no valid pitch: noise, a flat or an empty template); with
    ``return_salience``, also the (K,) salience of the chosen f0.

    Missing fundamentals: low piano notes often have (almost) no energy at f0, and then
    the comb one octave up matches about as well. The octave below the best f0 is taken
    when the comb of its odd harmonics 3, 5, 7, ... alone reaches ``odd_salience``
    (cosine) and its full comb ``min_salience``: a template whose true pitch is the best
    f0 has no energy at the odd multiples of f0 / 2 (1.5 f0, 2.5 f0, ...).
    """
    f0s, salience = comb_salience(W, bin_frequencies, fmin, fmax, n_harmonics,
                                  harmonic_decay, tolerance_semitones)
    K = salience.shape[1]
    if len(f0s) == 0:
        pitches, best_salience = np.full(K, np.nan), np.zeros(K)
    else:
        best = np.argmax(salience, axis=0)
        midi = _semitones(f0s)
        W, freqs = _check(W, bin_frequencies)
        norms = np.linalg.norm(W, axis=0)
        unit = np.divide(W, norms, out=np.zeros_like(W), where=norms > 0)
        # the odd harmonics (3, 5, ...) of every candidate: energy there means the
        # template's pitch is at least that low
        odd = harmonic_comb(f0s, freqs, harmonic_decay=harmonic_decay, tolerance_semitones=tolerance_semitones,
                            harmonics=np.arange(3, n_harmonics + 1, 2)) @ unit
        for k in range(K):
            while True:
                below = np.nonzero(np.abs(midi - (midi[best[k]] - 12.0)) < 0.5)[0]
                if len(below) == 0:
                    break
                lower = below[np.argmax(salience[below, k])]
                if odd[lower, k] < odd_salience or salience[lower, k] < min_salience:
                    break
                best[k] = lower
        best_salience = salience[best, np.arange(K)]
        pitches = midi[best] + _parabolic_offset(salience, best, midi)
        pitches[best_salience < min_salience] = np.nan
    return (pitches, best_salience) if return_salience else pitches


def _parabolic_offset(salience, best, midi) -> np.ndarray:
    """Sub-bin refinement (semitones) of each argmax by a parabola through its neighbours."""
    offsets = np.zeros(len(best))
    inner = (best > 0) & (best < len(midi) - 1)
    k = np.nonzero(inner)[0]
    b = best[inner]
    left, centre, right = salience[b - 1, k], salience[b, k], salience[b + 1, k]
    curvature = left - 2 * centre + right
    step = np.divide(0.5 * (left - right), curvature, out=np.zeros_like(centre), where=curvature < 0)
    spacing = 0.5 * (midi[b + 1] - midi[b - 1])
    offsets[k] = np.clip(step, -0.5, 0.5) * spacing
    return offsets


def harmonic_energy_share(W, bin_frequencies, pitches, n_harmonics: int = 12,
                          tolerance_semitones: float = 0.5) -> np.ndarray:
    """Harmonicity: the share of each template's energy (squared magnitude) in the bins
    within the lobe half-width of the harmonics 1..n_harmonics of its pitch; 0 where the
    pitch is NaN or the template is empty."""
    W, freqs = _check(W, bin_frequencies)
    pitches = np.asarray(pitches, dtype=float)
    if pitches.shape != (W.shape[1],):
        raise ValueError(f"pitches has shape {pitches.shape}, expected ({W.shape[1]},)")
    midi = _semitones(freqs)
    energy = W ** 2
    total = energy.sum(axis=0)
    share = np.zeros(W.shape[1])
    for k in np.nonzero(np.isfinite(pitches) & (total > 0))[0]:
        centres = pitches[k] + 12.0 * np.log2(np.arange(1, n_harmonics + 1))
        width = lobe_half_width(freqs, centres, tolerance_semitones)
        near = (np.abs(midi[:, None] - centres[None, :]) <= width[None, :] + 1e-9).any(axis=1)
        share[k] = energy[near, k].sum() / total[k]
    return share
