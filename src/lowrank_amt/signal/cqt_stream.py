"""Constant-Q magnitude of audio that arrives in pieces (``lowrank-amt listen``).

``CQTStream.push`` takes the next samples; ``frames(first)`` gives the frames from
``first`` to the newest (frame ``f`` centred on sample ``f * hop``, the newest the last
whose centre has arrived) as ``cqt.cqt_magnitude`` gives them for the audio received so
far with zeros after it: equal to float rounding (tests/test_cqt_stream.py states the bound),
at a cost that does not grow with what came before.

It runs cqt.py's plan: the signal halved once per octave. Between calls it keeps, per
rate, the samples and frames that later audio can no longer change (*final*):
- a halved sample is final once the resampler's reach (``REACH`` of its samples either
  side) lies in the final part of the signal it comes from. The samples after it (the
  tail) were computed with zeros for the audio to come; they are resampled again at the
  next call from ``REACH`` samples before them: the resampler is a fixed linear filter, so
  a segment's samples past its reach equal the whole signal's;
- a frame is final once its window lies in the final part of its octave's signal.
A call then costs the new samples, a tail per rate and the frames from ``first`` that are
not final yet (for the lowest octaves, whose filters span about 3 s, all of them).
"""

from __future__ import annotations

import numpy as np

from .cqt import Octave, downsample, magnitudes, one_blas_thread, plan

#: Output samples either side that one resampled sample depends on: soxr's high quality
#: filter reaches about 103 at ratios 2, 4 and 8 to 1 (weights below 1e-7 of its peak).
REACH = 128


class _Signal:
    """Samples ``start`` to ``end`` of one rate (indices from the audio's start); those
    before ``final`` no longer change."""

    def __init__(self):
        self.data, self.start, self.final = np.zeros(0, dtype=np.float32), 0, 0

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    def segment(self, begin: int, stop: int) -> np.ndarray:
        """Samples ``begin`` to ``stop``, zeros outside ``0:end``."""
        if self.start > 0 and begin < self.start:
            raise ValueError(f"samples before {self.start} were forgotten")
        out = np.zeros(stop - begin, dtype=np.float32)
        low, high = max(begin, self.start), min(stop, self.end)
        if high > low:
            out[low - begin:high - begin] = self.data[low - self.start:high - self.start]
        return out

    def replace_from(self, index: int, samples: np.ndarray) -> None:
        """Samples from ``index`` on are ``samples`` (those before ``start`` stay forgotten)."""
        skip = max(0, self.start - index)
        self.data = np.concatenate([self.data[:max(0, index - self.start)], samples[skip:]])

    def forget(self, before: int) -> None:
        drop = min(max(0, before - self.start), len(self.data))
        self.data, self.start = self.data[drop:], self.start + drop


class CQTStream:
    """``cqt_magnitude`` of a growing signal (see the module doc)."""

    def __init__(self, sample_rate: float, hop: int, fmin: float, n_bins: int, bins_per_octave: int):
        self.n_bins = n_bins
        halvings, self.octaves = plan(sample_rate, hop, fmin, n_bins, bins_per_octave)
        # Rates: the audio, then (if any) the early halvings' result, then one per halving.
        self.factors = ([2 ** halvings] if halvings else []) + [2 for o in self.octaves if o.halved]
        self.signals = [_Signal() for _ in range(len(self.factors) + 1)]
        # each octave's signal: its rate's index in ``signals``
        self.rate_of = np.cumsum([o.halved for o in self.octaves]) + (1 if halvings else 0)
        # Final frames per octave, (first frame, rows x frames).
        self.done = [(0, np.zeros((o.band.shape[0], 0), dtype=np.float32)) for o in self.octaves]
        self.stale = False

    @property
    def received(self) -> int:
        return self.signals[0].end

    def push(self, samples: np.ndarray) -> None:
        """Take the next samples (mono float32 at the stream's rate)."""
        audio = self.signals[0]
        audio.replace_from(audio.end, np.asarray(samples, dtype=np.float32))
        audio.final, self.stale = audio.end, True

    def frames(self, first: int) -> np.ndarray:
        """Bins x frames from ``first`` to the newest (float32, lowest bin first). Frames
        before ``first`` are forgotten: a later call must not ask for them."""
        if self.stale:
            self._halve()
        n_frames = min(1 + self.signals[r].end // o.hop for o, r in zip(self.octaves, self.rate_of))
        out = np.empty((self.n_bins, max(0, n_frames - first)), dtype=np.float32)
        with one_blas_thread():
            for index, (octave, rate) in enumerate(zip(self.octaves, self.rate_of)):
                out[octave.bins] = self._octave_frames(index, octave, self.signals[rate], first, n_frames)
        self._forget()
        return out

    def _halve(self) -> None:
        """Bring every rate up to the audio: its tail resampled again, then the new samples."""
        for factor, above, below in zip(self.factors, self.signals, self.signals[1:]):
            redo = below.final
            begin = max(0, redo - REACH) * factor
            resampled = downsample(above.segment(begin, above.end), factor)
            below.replace_from(redo, resampled[redo - begin // factor:])
            below.final = max(below.final, min(below.end, above.final // factor - REACH))
        self.stale = False

    def _octave_frames(self, index: int, octave: Octave, signal: _Signal, first: int, stop: int) -> np.ndarray:
        """One octave's rows for frames ``first`` to ``stop``: the final ones kept, the
        others computed (and kept where they are final now)."""
        kept_from, kept = self.done[index]
        if first < kept_from:
            raise ValueError(f"frames before {kept_from} were forgotten")
        begin = max(first, kept_from + kept.shape[1])  # the first frame not kept
        kept = kept[:, min(first - kept_from, kept.shape[1]):]
        half = octave.n_fft // 2
        fresh = magnitudes(signal.segment(begin * octave.hop - half, (stop - 1) * octave.hop + half),
                           stop - begin, octave) if stop > begin else kept[:, :0]
        n_final = min(max(0, (signal.final - half) // octave.hop + 1 - begin), fresh.shape[1])
        kept = np.concatenate([kept, fresh[:, :n_final]], axis=1)
        self.done[index] = (first, kept)
        return np.concatenate([kept, fresh[:, n_final:]], axis=1)

    def _forget(self) -> None:
        """Drop the samples no later call needs: those before the next frame to compute of
        the octave computed from them and before the reach of the next rate's tail."""
        needed = [signal.end for signal in self.signals]
        for (kept_from, kept), octave, rate in zip(self.done, self.octaves, self.rate_of):
            needed[rate] = min(needed[rate], (kept_from + kept.shape[1]) * octave.hop - octave.n_fft // 2)
        for index, factor in enumerate(self.factors):
            needed[index] = min(needed[index], max(0, self.signals[index + 1].final - REACH) * factor)
        for signal, before in zip(self.signals, needed):
            signal.forget(before)
