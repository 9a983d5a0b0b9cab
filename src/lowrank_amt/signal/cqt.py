"""Constant-Q magnitude: librosa's algorithm, without librosa.

The features of every model were computed with ``librosa.cqt`` (0.11, its defaults: Hann
filters of ``filter_scale`` 1, L1 norm, sparsity 0.01, ``soxr_hq`` resampling, lengths
scaled). This module computes the same transform the same way, octave by octave from the
top, halving the sample rate and the hop between octaves:

- each bin's filter is a Hann-windowed complex exponential of length ``Q sr / f``, with
  ``Q = 1 / alpha`` from the bins' relative bandwidth; an octave's filters are padded to one
  power-of-two FFT size, their spectra sparsified (the smallest 1 % of each row's L1 mass
  dropped);
- an octave's response is the spectrum of each frame of the signal (a rectangular window,
  frames centred as ``librosa.stft`` centres them, zeros outside) times its filters' spectra;
- the magnitudes are divided by the square root of the filter lengths.

The values equal librosa's to float32 rounding (tests/test_features.py states the
tolerance); the sums run in another order, so they are not bit-identical. Why not librosa:
importing it (numba, scipy.signal) is about a second of every ``transcribe`` start-up, and
its STFT copies each octave's spectrum before the product. Filters are built once per
process and kept.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft
from threadpoolctl import ThreadpoolController

from .audio import resample

#: librosa's default, which every model's features used (its resampling is audio.resample's).
SPARSITY = 0.01
#: Equivalent noise bandwidth of the Hann window in bins (librosa's ``window_bandwidth``).
HANN_BANDWIDTH = 1.50018310546875


def frequencies(fmin: float, n_bins: int, bins_per_octave: int) -> np.ndarray:
    """Centre frequency (Hz) of each bin, lowest first (``librosa.cqt_frequencies``)."""
    return fmin * 2.0 ** (np.arange(0, n_bins, dtype=float) / bins_per_octave)


def relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    """Each bin's bandwidth over its frequency, from its neighbours' spacing."""
    logf = np.log2(freqs)
    per_octave = np.empty_like(freqs)
    per_octave[0] = 1 / (logf[1] - logf[0])
    per_octave[-1] = 1 / (logf[-1] - logf[-2])
    per_octave[1:-1] = 2 / (logf[2:] - logf[:-2])
    return (2.0 ** (2 / per_octave) - 1) / (2.0 ** (2 / per_octave) + 1)


def filter_lengths(freqs: np.ndarray, alpha: np.ndarray, sample_rate: float) -> tuple[np.ndarray, float]:
    """(length in samples of each bin's filter, highest frequency any filter passes)."""
    q = 1.0 / alpha
    cutoff = float(max(freqs * (1 + 0.5 * HANN_BANDWIDTH / q)))
    return q * sample_rate / freqs, cutoff


def _hann(length: float) -> np.ndarray:
    """A periodic Hann window of ``floor(length)`` samples, padded with zeros to ``ceil``."""
    n_min, n_max = int(np.floor(length)), int(np.ceil(length))
    window = np.zeros(n_max)
    window[:n_min] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_min) / n_min)
    return window


@functools.lru_cache(maxsize=64)
def octave_filters(sample_rate: float, freqs: tuple, alpha: tuple) -> tuple[int, int, np.ndarray]:
    """(FFT size, first FFT bin, filter spectra over the bins from it: filters x bins,
    complex64) of one octave's filters at ``sample_rate``; the dropped entries are zero
    and the band is the smallest that holds every kept entry."""
    freqs, alpha = np.array(freqs), np.array(alpha)
    lengths, _ = filter_lengths(freqs, alpha, sample_rate)
    n_fft = int(2.0 ** np.ceil(np.log2(max(lengths))))
    basis = np.zeros((len(freqs), n_fft), dtype=np.complex64)
    for row, (length, freq) in enumerate(zip(lengths, freqs)):
        angles = np.arange(-length // 2, length // 2, dtype=float) * 2 * np.pi * freq / sample_rate
        wave = (np.cos(angles) + 1j * np.sin(angles)) * _hann(len(angles))
        wave /= np.sum(np.abs(wave))
        start = (n_fft - len(wave)) // 2
        basis[row, start:start + len(wave)] = wave
    basis *= lengths[:, None] / float(n_fft)
    spectra = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    magnitudes = np.abs(spectra)
    ordered = np.sort(magnitudes, axis=1)
    cumulative = np.cumsum(ordered / magnitudes.sum(axis=1, keepdims=True), axis=1)
    threshold = ordered[np.arange(len(freqs)), np.argmin(cumulative < SPARSITY, axis=1)]
    spectra[magnitudes < threshold[:, None]] = 0
    kept = np.flatnonzero(np.any(spectra != 0, axis=0))
    first, last = int(kept[0]), int(kept[-1]) + 1
    return n_fft, first, np.ascontiguousarray(spectra[:, first:last], dtype=np.complex64)


@dataclass(frozen=True)
class Octave:
    """One octave of the transform, as it runs: its filters at its rate, and where its
    magnitudes go (rows ``bins`` of the output, lowest bin first)."""
    bins: slice
    #: Whether the signal is halved before this octave (the one above's rate over two).
    halved: bool
    hop: int
    n_fft: int
    first: int
    band: np.ndarray
    #: Magnitude scale: the rate's (``sqrt(first octave's rate / this rate)``) and each
    #: row's filter length's (divided by its square root).
    gain: float
    root_lengths: np.ndarray


def plan(sample_rate: float, hop: int, fmin: float, n_bins: int, bins_per_octave: int) -> tuple[int, list[Octave]]:
    """(halvings of the signal before the top octave, the octaves from the top) of a CQT."""
    freqs = frequencies(fmin, n_bins, bins_per_octave)
    alpha = relative_bandwidth(freqs)
    _, cutoff = filter_lengths(freqs, alpha, sample_rate)
    n_octaves = int(np.ceil(n_bins / bins_per_octave))
    halvings = _early_halvings(sample_rate / 2, cutoff, hop, n_octaves)
    rate, hop = float(sample_rate) / 2 ** halvings, hop // 2 ** halvings
    root_lengths = np.sqrt(filter_lengths(freqs, alpha, rate)[0])
    scale_rate, halved, octaves = rate, False, []
    for octave in range(n_octaves):
        top = n_bins - octave * bins_per_octave
        bins = slice(max(0, top - bins_per_octave), top)
        n_fft, first, band = octave_filters(rate, tuple(freqs[bins]), tuple(alpha[bins]))
        octaves.append(Octave(bins, halved, hop, n_fft, first, band, np.sqrt(scale_rate / rate), root_lengths[bins]))
        halved = hop % 2 == 0
        if halved:
            rate, hop = rate / 2, hop // 2
    return halvings, octaves


def magnitudes(padded: np.ndarray, n_frames: int, octave: Octave) -> np.ndarray:
    """Rows ``octave.bins`` of the output for ``n_frames`` frames, frame ``t`` being
    ``padded[t * hop : t * hop + n_fft]`` (float32)."""
    frames = np.lib.stride_tricks.as_strided(padded, (n_frames, octave.n_fft),
                                             (octave.hop * padded.strides[0], padded.strides[0]))
    spectrum = scipy.fft.rfft(frames, axis=1)[:, octave.first:octave.first + octave.band.shape[1]]
    response = np.abs((spectrum @ octave.band.T).T) * octave.gain
    return (response / octave.root_lengths[:, None]).astype(np.float32)


def downsample(audio: np.ndarray, factor: int = 2) -> np.ndarray:
    """``audio`` at its rate over ``factor``, its energy kept (librosa's
    ``resample(..., scale=True)``: the length rounded up, the amplitude times sqrt(factor))."""
    return (resample(audio, factor, 1) / np.sqrt(1 / factor)).astype(audio.dtype)


def _early_halvings(nyquist: float, cutoff: float, hop: int, n_octaves: int) -> int:
    """How many times the signal is halved before the top octave (librosa's rule)."""
    by_band = max(0, int(np.ceil(np.log2(nyquist / cutoff)) - 1) - 1)
    twos = (hop & -hop).bit_length() - 1
    return min(by_band, max(0, twos - n_octaves + 1))


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Built once: finding the loaded BLAS libraries reads /proc/self/maps, about 2 ms once
    # torch is loaded, which ``listen`` would pay for every block.
    return ThreadpoolController()


def one_blas_thread():
    """A context with numpy's BLAS on one thread: a second one halves no wall time on these
    thin products, and its spinning afterwards doubled the CPU time of the transform."""
    return _blas_controller().limit(limits=1, user_api="blas")


def cqt_magnitude(audio: np.ndarray, sample_rate: float, hop: int, fmin: float, n_bins: int,
                  bins_per_octave: int) -> np.ndarray:
    """|CQT| of mono float32 ``audio``, bins x frames (lowest bin first), frame ``f``
    centred on sample ``f * hop``; as ``np.abs(librosa.cqt(...))`` with these arguments."""
    audio = np.asarray(audio, dtype=np.float32)
    halvings, octaves = plan(sample_rate, hop, fmin, n_bins, bins_per_octave)
    if halvings:
        audio = downsample(audio, 2 ** halvings)
    rows = []
    with one_blas_thread():
        for octave in octaves:
            audio = downsample(audio) if octave.halved else audio
            rows.append(magnitudes(np.pad(audio, octave.n_fft // 2), 1 + len(audio) // octave.hop, octave))
    n_frames = min(r.shape[1] for r in rows)
    return np.concatenate([r[:, :n_frames] for r in reversed(rows)], axis=0)
