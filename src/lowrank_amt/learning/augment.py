"""Training-time augmentation of magnitude features, so that a training set carries more
pianos and rooms than its presets: a random gain, equaliser, room and noise per segment.

Conventions. Features are magnitudes (bins x frames) on log-spaced bins (cqt, logstft);
each augmentation acts on them directly, with no audio rendered again:

* **gain**: every bin times 10 ** (g / 20), g uniform in [-gain_db, gain_db];
* **equaliser**: bin b times 10 ** (e(u) / 20), u = b / (bins - 1), e a sum of three
  cosines over u (periods of 1, 1/2 and 1/3 of the range, random phases) of amplitudes
  uniform in [-eq_db / 3, eq_db / 3], so |e| <= eq_db: a smooth tilt of the timbre;
* **room**: a reverberation tail added in power, as an incoherent exponential decay: the
  tail of frame n is d * (tail[n-1] + (1 - d) * r * P[n-1]), with d the decay per frame of
  a reverberation time uniform in [0, reverb_seconds] (60 dB of power over it, falling to
  half of it at the top bin: high frequencies die sooner) and r uniform in [0.25, 1] the
  tail's energy over the direct sound's. Segments only: a batch of shuffled frames has no
  time order, so frames mode takes no room;
* **noise**: power added per bin and frame, exponentially distributed (the power of a
  complex Gaussian) around a level uniform in [noise_db - 20, noise_db] dB of the
  segment's mean power, tilted by up to 10 dB across the bins.

Every draw comes from the generator it is given: the loader gives one per epoch, apart
from the batch order's, so the same seed and epoch give the same batches with or without
augmentation and the same augmented features. Targets are never touched. With every
amount at 0 (the default) nothing is drawn and the features are returned as they are.
"""

from __future__ import annotations

import numpy as np

from ..param import Param, complete

PARAMS = (
    Param("gain_db", 0.0, type="number", minimum=0, maximum=40, meaning="Largest random gain in dB, up or down."),
    Param("eq_db", 0.0, type="number", minimum=0, maximum=24,
          meaning="Largest deviation in dB of the random equaliser, a smooth curve over the bins."),
    Param("reverb_seconds", 0.0, type="number", minimum=0, maximum=4,
          meaning="Longest random reverberation time, RT60 in seconds, of the room added to training segments."),
    Param("noise_db", None, type=["number", "null"], minimum=-80, maximum=0,
          meaning="Loudest random noise in dB of a segment's mean power, drawn from 20 dB below; null: none."),
)

def augmentation(spec: dict | None) -> dict | None:
    """The full augmentation spec of a model's ``augment`` entry, or None when it does nothing."""
    full = complete(PARAMS, spec or {}, "augment")
    active = full["gain_db"] or full["eq_db"] or full["reverb_seconds"] or full["noise_db"] is not None
    return full if active else None


def _equaliser(rng, n_bins: int, eq_db: float) -> np.ndarray:
    u = np.linspace(0.0, 1.0, n_bins)
    amplitudes = rng.uniform(-eq_db / 3, eq_db / 3, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    return sum(a * np.cos(2 * np.pi * (k + 1) * u + p) for k, (a, p) in enumerate(zip(amplitudes, phases)))


def _room(power: np.ndarray, rng, reverb_seconds: float, frame_rate: float) -> np.ndarray:
    """``power`` (bins x frames) with a decaying tail added (see the module docstring)."""
    rt60 = rng.uniform(0.0, reverb_seconds) * np.linspace(1.0, 0.5, power.shape[0])
    ratio = rng.uniform(0.25, 1.0)
    decay = np.where(rt60 > 0, 10 ** (-6 / (np.maximum(rt60, 1e-9) * frame_rate)), 0.0)
    out, tail = power.copy(), np.zeros(power.shape[0])
    for n in range(1, power.shape[1]):
        tail = decay * (tail + (1 - decay) * ratio * power[:, n - 1])
        out[:, n] += tail
    return out


def augment_segment(x: np.ndarray, rng, spec: dict, frame_rate: float, room: bool = True) -> np.ndarray:
    """One segment's features (bins x frames, magnitudes) augmented as ``spec`` says."""
    n_bins = x.shape[0]
    level_db = rng.uniform(-spec["gain_db"], spec["gain_db"]) + _equaliser(rng, n_bins, spec["eq_db"])
    power = (x.astype(np.float64) * 10 ** (level_db / 20)[:, None]) ** 2
    if room and spec["reverb_seconds"]:
        power = _room(power, rng, spec["reverb_seconds"], frame_rate)
    if spec["noise_db"] is not None:
        noise_db = rng.uniform(spec["noise_db"] - 20, spec["noise_db"]) + np.linspace(0, rng.uniform(-10, 10), n_bins)
        floor = power.mean() * 10 ** (noise_db / 10)
        power = power + floor[:, None] * rng.exponential(1.0, power.shape)
    return np.sqrt(power).astype(x.dtype)


def augment_batch(features: np.ndarray, rng, spec: dict, frame_rate: float) -> np.ndarray:
    """A batch of the loader augmented: segments (B x bins x T) one draw each, with a room;
    frames (bins x B) one draw for the batch, without (their order is shuffled)."""
    if features.ndim == 2:
        return augment_segment(features, rng, spec, frame_rate, room=False)
    return np.stack([augment_segment(x, rng, spec, frame_rate) for x in features])
