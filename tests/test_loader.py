"""The streaming loader on a hand-made cache whose frames carry their own identity:
feature row 0 = track number, row 1 = frame number, and the roll repeats them."""

import numpy as np
import pandas as pd
import pytest

from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.learning.loader import FrameBatches, select_training_tracks
from lowrank_amt.signal.feature_cache import record_checksums

N_BINS = 5
FRAME_RATE = 10.0
#: (split, frames) per track
TRACKS = [("train", 95), ("train", 7), ("validation", 40), ("train", 300), ("train", 64), ("test", 12)]


@pytest.fixture
def index_path(tmp_path):
    rows = []
    for t, (split, n) in enumerate(TRACKS):
        features = np.zeros((N_BINS, n), np.float16)
        features[0], features[1], features[2:] = t, np.arange(n), 1.0
        roll = np.zeros((88, n), np.uint8)
        roll[0], roll[1] = t, np.arange(n) % 256
        np.save(tmp_path / f"t{t}.npy", features)
        np.save(tmp_path / f"t{t}.roll.npy", roll)
        rows.append({"track_id": f"t{t}", "split": split, "features_path": f"t{t}.npy", "roll_path": f"t{t}.roll.npy",
                     "midi_path": "none.mid", "n_frames": n, "frame_rate": FRAME_RATE, "duration": n / FRAME_RATE})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    record_checksums(tmp_path)
    return tmp_path / "index.csv"


def identities(features):
    return [(int(t), int(f)) for t, f in zip(features[0], features[1])]


def test_frames_visit_every_frame_once_shuffled_and_reproducibly(index_path):
    loader = FrameBatches(index_path, "train", batch_frames=32, seed=4, chunk_frames=16, buffer_chunks=3)
    expected = sorted((t, f) for t, (split, n) in enumerate(TRACKS) if split == "train" for f in range(n))
    assert loader.n_frames == len(expected) == 466
    batches = list(loader.epoch(0))
    seen = [i for x, _ in batches for i in identities(x)]
    assert sorted(seen) == expected
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.uint8 and x.shape[0] == N_BINS and y.shape[0] == 88
        assert 0 < x.shape[1] <= 32 and x.shape[1] == y.shape[1]
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1] % 256, y[1])  # frame and target stay paired
    assert sum(x.shape[1] < 32 for x, _ in batches) <= 1
    assert seen != expected and len({t for t, _ in identities(batches[0][0])}) >= 2  # mixed across tracks
    again = [i for x, _ in loader.epoch(0) for i in identities(x)]
    other = [i for x, _ in loader.epoch(1) for i in identities(x)]
    assert again == seen and other != seen and sorted(other) == expected


def test_unshuffled_frames_come_in_index_order(index_path):
    loader = FrameBatches(index_path, "validation", batch_frames=16, seed=0, shuffle=False)
    assert [i for x, _ in loader.epoch(3) for i in identities(x)] == [(2, f) for f in range(40)]


def test_segments_are_contiguous_padded_and_reproducible(index_path):
    loader = FrameBatches(index_path, "train", batch_frames=100, seed=1, segment_frames=25)
    batches = list(loader.epoch(0))
    segments = [(x[i], y[i]) for x, y in batches for i in range(len(x))]
    assert all(x.shape[0] <= 4 and x.shape[1:] == (N_BINS, 25) and y.shape[1:] == (88, 25) for x, y in batches)
    # 95 -> 3, 7 -> 1 (padded), 300 -> 12, 64 -> 2 segments
    assert len(segments) == 18
    for x, y in segments:
        track, frames = int(x[0, 0]), x[1]
        n = TRACKS[track][1]
        if n < 25:
            assert np.array_equal(frames[:n], np.arange(n)) and not x[:, n:].any() and not y[:, n:].any()
        else:
            assert np.array_equal(np.diff(frames), np.ones(24)) and frames[-1] < n
            assert (x[0] == track).all() and np.array_equal(y[1], frames % 256)
    firsts = lambda e: [(int(x[i, 0, 0]), int(x[i, 1, 0])) for x, _ in loader.epoch(e) for i in range(len(x))]  # noqa: E731
    assert firsts(0) == firsts(0) and firsts(0) != firsts(1)


def test_max_batches_ends_an_epoch_with_a_random_part_of_the_split(index_path):
    whole = FrameBatches(index_path, "train", batch_frames=50, seed=1, segment_frames=25)
    part = FrameBatches(index_path, "train", batch_frames=50, seed=1, segment_frames=25, max_batches=3)
    starts = lambda loader, e: [(int(x[i, 0, 0]), int(x[i, 1, 0])) for x, _ in loader.epoch(e)  # noqa: E731
                                for i in range(len(x))]
    assert len(starts(whole, 0)) == 18 and len(starts(part, 0)) == 6
    # the first batches of the whole epoch, so another epoch sees other segments
    assert starts(part, 0) == starts(whole, 0)[:6] and set(starts(part, 0)) != set(starts(part, 1))
    with pytest.raises(LowrankAmtError, match="max_batches"):
        FrameBatches(index_path, "train", 50, 1, max_batches=0)


def test_training_hours_select_a_nested_prefix(index_path):
    index = pd.read_csv(index_path)
    # training durations in index order: 9.5, 0.7, 30.0, 6.4 s
    assert list(select_training_tracks(index, 10.0 / 3600)["track_id"]) == ["t0", "t1"]
    assert list(select_training_tracks(index, 9.5 / 3600)["track_id"]) == ["t0"]
    assert list(select_training_tracks(index, 40 / 3600)["track_id"]) == ["t0", "t1", "t3"]
    assert len(select_training_tracks(index, None)) == 4
    with pytest.raises(LowrankAmtError, match="fewer than"):
        select_training_tracks(index, 1.0)
    loader = FrameBatches(index_path, "train", 64, 0, train_hours=10.0 / 3600)
    assert loader.n_frames == 102
    assert {t for x, _ in loader.epoch(0) for t, _ in identities(x)} == {0, 1}


def test_bad_arguments_are_refused(index_path):
    with pytest.raises(LowrankAmtError, match="segment_frames"):
        FrameBatches(index_path, "train", 10, 0, segment_frames=20)
    with pytest.raises(LowrankAmtError, match="'isolated'"):
        FrameBatches(index_path, "isolated", 10, 0)
    with pytest.raises(LowrankAmtError, match="onsets"):
        FrameBatches(index_path, "train", 10, 0, target="onsets")
