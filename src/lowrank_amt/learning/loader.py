"""Streaming mini-batches of frames or segments from the on-disk feature cache.

Memory does not grow with the dataset: tracks stay on disk (``.npy`` files, memory-mapped
only while a piece of them is copied out, so their pages never pile up in the process),
and an epoch keeps one shuffle buffer plus a list of chunk or segment positions (16 bytes
per ``chunk_frames`` or ``segment_frames`` frames).

Frames mode (``segment_frames=None``): each track is cut into chunks of ``chunk_frames``
consecutive frames; an epoch visits the chunks of the whole split in a random order,
``buffer_chunks`` at a time, shuffles the frames of those chunks together and cuts them
into batches of ``batch_frames`` (the last batch of an epoch may be smaller). Every frame
is delivered exactly once per epoch.

Segments mode (``segment_frames=T``): each track is cut into non-overlapping segments of
T frames from a random offset (so segment borders move between epochs); segments are
visited in a random order, ``batch_frames // T`` per batch. A track shorter than T gives
one segment, zero-padded (features and targets) to T frames.

With ``shuffle=False`` both modes go through the tracks in index order from offset 0.
The same ``seed`` and epoch number always give the same batches. ``max_batches`` ends an
epoch after that many batches: shuffled, a random part of the split (a different one each
epoch), so that an epoch's cost stays flat however large the split grows. ``augment`` (a
full spec of ``augment.py``) augments the features of every batch from a generator of its
own per epoch: the batches, their order and their targets stay those without it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import N_KEYS
from ..errors import LowrankAmtError
from ..signal.feature_cache import load_cached, read_index
from .augment import augment_batch

#: the augmentation's generator per epoch is seeded [seed, epoch, AUGMENT_STREAM]
AUGMENT_STREAM = 1


def select_training_tracks(index: pd.DataFrame, hours: float | None) -> pd.DataFrame:
    """The first training tracks (index order) whose cumulative duration reaches ``hours``
    (all of them when None), so a smaller selection is always part of a larger one."""
    train = index[index["split"] == "train"].reset_index(drop=True)
    if hours is None:
        return train
    if hours <= 0:
        raise LowrankAmtError(f"train_hours must be > 0, got {hours}")
    seconds = np.cumsum(train["duration"].to_numpy(dtype=float))
    if not len(seconds) or seconds[-1] < hours * 3600 - 1e-6:
        have = seconds[-1] / 3600 if len(seconds) else 0.0
        raise LowrankAmtError(f"the feature index has {have:.4f} h of training audio, fewer than the "
                              f"{hours} h asked; prepare a larger dataset (datasets.<name>.train_hours)")
    return train.iloc[: int(np.searchsorted(seconds, hours * 3600 - 1e-6)) + 1]


def attack_rows(onsets: np.ndarray, attack_frames: int) -> np.ndarray:
    """88 x N uint8: 1 in the ``attack_frames`` frames from each onset (an onset roll
    spread forward in time), where a note's attack sounds."""
    onsets = np.asarray(onsets, dtype=np.uint8)
    rows = onsets.copy()
    for shift in range(1, attack_frames):
        rows[:, shift:] |= onsets[:, :-shift]
    return rows


class FrameBatches:
    """Mini-batches of (features, targets) over one split of a feature index; see the module doc.

    ``epoch(e)`` yields ``(features, roll)``: frames mode gives float32 (F x B) and uint8
    (88 x B), B <= batch_frames; segments mode gives float32 (B x F x T) and uint8
    (B x 88 x T), B <= batch_frames // T. ``target`` picks the targets: ``roll``
    (key activity), ``onsets``, ``offsets`` or ``class_roll`` (classes x 88 rows). With ``attack_frames`` A > 0 the targets
    gain 88 rows after them (176 in all): 1 in the first A frames of each note
    (``attack_rows``), computed per track before any shuffle.
    """

    def __init__(self, index_path: str | Path, split: str, batch_frames: int, seed: int,
                 segment_frames: int | None = None, shuffle: bool = True,
                 train_hours: float | None = None, target: str = "roll",
                 chunk_frames: int = 256, buffer_chunks: int = 64, attack_frames: int = 0,
                 max_batches: int | None = None, augment: dict | None = None):
        if batch_frames < 1 or chunk_frames < 1 or buffer_chunks < 1 or (max_batches is not None and max_batches < 1):
            raise LowrankAmtError("batch_frames, chunk_frames, buffer_chunks and max_batches must be >= 1")
        if segment_frames is not None and not 1 <= segment_frames <= batch_frames:
            raise LowrankAmtError(f"segment_frames ({segment_frames}) must be between 1 and batch_frames ({batch_frames})")
        index = read_index(index_path)
        for name in (target, "onsets") if attack_frames else (target,):
            if f"{name}_path" not in index.columns:
                raise LowrankAmtError(f"feature index {index_path} has no '{name}' targets; extract the features again")
        if split == "train":
            tracks = select_training_tracks(index, train_hours)
        elif train_hours is not None:
            raise LowrankAmtError("train_hours selects training tracks; it applies to split 'train' only")
        else:
            tracks = index[index["split"] == split].reset_index(drop=True)
        tracks = tracks[tracks["n_frames"] > 0]
        if tracks.empty:
            raise LowrankAmtError(f"feature index {index_path} has no '{split}' tracks")
        self.features_paths = list(tracks["features_path"])
        self.target_paths = list(tracks[f"{target}_path"])
        self.onset_paths = list(tracks["onsets_path"]) if attack_frames else None
        self.attack_frames = attack_frames
        self.n_target_rows = int(load_cached(self.target_paths[0]).shape[0]) + (N_KEYS if attack_frames else 0)
        self.track_frames = tracks["n_frames"].to_numpy(dtype=np.int64)
        self.n_frames = int(self.track_frames.sum())
        self.n_bins = int(load_cached(self.features_paths[0]).shape[0])
        self.batch_frames, self.seed, self.shuffle = batch_frames, seed, shuffle
        self.segment_frames, self.chunk_frames, self.buffer_chunks = segment_frames, chunk_frames, buffer_chunks
        self.max_batches = max_batches
        self.augment = augment
        self.frame_rate = float(tracks["frame_rate"].iloc[0]) if augment is not None else None

    def epoch(self, epoch: int):
        """Iterate over the batches of epoch number ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = self._frames(rng) if self.segment_frames is None else self._segments(rng)
        batches = batches if self.max_batches is None else itertools.islice(batches, self.max_batches)
        if self.augment is None:
            return batches
        augment_rng = np.random.default_rng([self.seed, epoch, AUGMENT_STREAM])
        return ((augment_batch(x, augment_rng, self.augment, self.frame_rate), y) for x, y in batches)

    def _read(self, track: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames [start, stop) of one track, copied out of short-lived memory maps."""
        features = load_cached(self.features_paths[track])
        targets = np.array(load_cached(self.target_paths[track])[:, start:stop], dtype=np.uint8)
        if self.attack_frames:  # onsets up to A - 1 frames before the chunk reach into it
            before = min(start, self.attack_frames - 1)
            onsets = load_cached(self.onset_paths[track])[:, start - before:stop]
            targets = np.concatenate([targets, attack_rows(onsets, self.attack_frames)[:, before:]])
        return np.array(features[:, start:stop], dtype=np.float32), targets

    def _frames(self, rng):
        C = self.chunk_frames
        counts = -(-self.track_frames // C)
        track_of = np.repeat(np.arange(len(counts)), counts)
        start_of = np.concatenate([np.arange(n) * C for n in counts])
        order = rng.permutation(len(track_of)) if self.shuffle else np.arange(len(track_of))
        # the shuffle buffer is frames-major (frames x bins): shuffling moves whole rows,
        # several times faster than gathering scattered columns; batches go out bins x frames.
        # Chunks are copied straight into it, each batch gathers its shuffled rows and the
        # leftover frames are copied out: one buffer is alive at a time, memory stays flat.
        pending_x = np.empty((0, self.n_bins), np.float32)
        pending_y = np.empty((0, self.n_target_rows), np.uint8)
        for g in range(0, len(order), self.buffer_chunks):
            group = order[g:g + self.buffer_chunks]
            if self.shuffle:  # read each track's chunks together; order is shuffled below anyway
                group = group[np.lexsort((start_of[group], track_of[group]))]
            lengths = np.minimum(C, self.track_frames[track_of[group]] - start_of[group])
            xs = np.empty((len(pending_x) + lengths.sum(), self.n_bins), np.float32)
            ys = np.empty((len(xs), self.n_target_rows), np.uint8)
            xs[:len(pending_x)], ys[:len(pending_x)] = pending_x, pending_y
            at = len(pending_x)
            for c, n in zip(group, lengths):
                x, y = self._read(track_of[c], start_of[c], start_of[c] + C)
                xs[at:at + n], ys[at:at + n] = x.T, y.T
                at += n
            # each batch gathers its rows of the shuffle (no second, shuffled buffer)
            perm = rng.permutation(xs.shape[0]) if self.shuffle else np.arange(xs.shape[0])
            n_full = xs.shape[0] // self.batch_frames * self.batch_frames
            for b in range(0, n_full, self.batch_frames):
                rows = perm[b:b + self.batch_frames]
                yield np.ascontiguousarray(xs[rows].T), np.ascontiguousarray(ys[rows].T)
            pending_x, pending_y = xs[perm[n_full:]], ys[perm[n_full:]]
            del xs, ys
        if pending_x.shape[0]:
            yield np.ascontiguousarray(pending_x.T), np.ascontiguousarray(pending_y.T)

    def _segments(self, rng):
        T = self.segment_frames
        tracks, starts = [], []
        for t, n in enumerate(self.track_frames):
            offset = int(rng.integers(0, n % T + 1)) if self.shuffle and n >= T else 0
            k = max(1, (n - offset) // T)
            tracks.append(np.full(k, t))
            starts.append(offset + T * np.arange(k))
        tracks, starts = np.concatenate(tracks), np.concatenate(starts)
        order = rng.permutation(len(tracks)) if self.shuffle else np.arange(len(tracks))
        per_batch = self.batch_frames // T
        for b in range(0, len(order), per_batch):
            chosen = order[b:b + per_batch]
            xs = np.zeros((len(chosen), self.n_bins, T), np.float32)
            ys = np.zeros((len(chosen), self.n_target_rows, T), np.uint8)
            for i, c in enumerate(chosen):
                x, y = self._read(tracks[c], starts[c], starts[c] + T)
                xs[i, :, :x.shape[1]], ys[i, :, :y.shape[1]] = x, y
            yield xs, ys
