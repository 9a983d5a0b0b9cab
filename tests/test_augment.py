"""Augmentation (augment.py) and the loader's use of it: each effect checked against what
it claims, reproducible from its seed, the targets and batches untouched."""

import numpy as np
import pytest

from lowrank_amt.learning.augment import augment_batch, augment_segment, augmentation
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.learning.loader import FrameBatches

from test_loader import index_path  # noqa: F401  (the loader's hand-made cache)

FRAME_RATE = 43.07


def spec(**amounts):
    return augmentation(amounts)


def segment(bins=24, frames=80, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, (bins, frames)).astype(np.float32)


def test_nothing_asked_is_nothing_done():
    assert augmentation({}) is None and augmentation(None) is None
    assert augmentation({"gain_db": 0, "eq_db": 0, "reverb_seconds": 0}) is None
    with pytest.raises(LowrankAmtError, match="'augment.gain'"):
        augmentation({"gain": 3})
    with pytest.raises(LowrankAmtError, match="'augment.eq_db'"):
        augmentation({"eq_db": -1})


def test_gain_and_equaliser_scale_each_bin_by_one_factor_within_their_bounds():
    x = segment()
    y = augment_segment(x, np.random.default_rng(1), spec(gain_db=6), FRAME_RATE)
    ratio_db = 20 * np.log10(y / x)
    assert np.ptp(ratio_db) < 1e-4 and abs(ratio_db[0, 0]) <= 6 and abs(ratio_db[0, 0]) > 0.01
    y = augment_segment(x, np.random.default_rng(2), spec(eq_db=9), FRAME_RATE)
    ratio_db = 20 * np.log10(y / x)
    curve = ratio_db[:, 0]
    assert np.abs(ratio_db - curve[:, None]).max() < 1e-4  # one factor per bin, over every frame
    assert np.abs(curve).max() <= 9 and np.ptp(curve) > 0.5
    assert np.abs(np.diff(curve)).max() < 9 * 2 * np.pi * 2 / len(curve)  # smooth: bounded slope


def test_a_room_adds_a_tail_that_decays_faster_in_the_top_bins():
    x = np.zeros((16, 200), np.float32)
    x[:, 0] = 1.0  # a click
    y = augment_segment(x, np.random.default_rng(3), spec(reverb_seconds=1.0), FRAME_RATE).astype(float) ** 2
    assert np.array_equal(y[:, 0], np.ones(16))
    decay = y[:, 3] / y[:, 2]  # the tail falls by one factor per frame
    assert np.allclose(y[:, 4] / y[:, 3], decay, rtol=1e-5)
    rt60 = -6 / (np.log10(decay) * FRAME_RATE)
    assert 0 < rt60[0] <= 1.0 and rt60[-1] == pytest.approx(rt60[0] / 2, rel=1e-4)
    tail = y[:, 1:].sum(axis=1)  # r * d of the click's energy, r in [0.25, 1]
    assert np.all(tail <= decay + 1e-6) and np.all(tail >= 0.25 * decay * 0.99)


def test_noise_adds_power_at_its_level():
    x = np.ones((24, 2000), np.float32)
    y = augment_segment(x, np.random.default_rng(4), spec(noise_db=-20), FRAME_RATE).astype(float) ** 2
    added_db = 10 * np.log10((y - 1).mean(axis=1))
    assert np.all(added_db > -20 - 20 - 10 - 1) and np.all(added_db < -20 + 10 + 1)
    assert np.all(y >= 1 - 1e-6)


def test_frames_mode_draws_once_per_batch_and_takes_no_room():
    x = segment(frames=30)
    y = augment_batch(x, np.random.default_rng(5), spec(gain_db=6, reverb_seconds=2.0), FRAME_RATE)
    assert np.ptp(20 * np.log10(y / x)) < 1e-4  # the gain alone: no tail in shuffled frames


def test_the_loader_augments_reproducibly_and_leaves_targets_and_order_alone(index_path):  # noqa: F811
    def batches(augment, epoch=0):
        loader = FrameBatches(index_path, "train", 32, seed=7, segment_frames=16, augment=augment)
        return list(loader.epoch(epoch))
    amounts = spec(gain_db=6, eq_db=6, reverb_seconds=0.5, noise_db=-30)
    plain, augmented, again = batches(None), batches(amounts), batches(amounts)
    assert len(plain) == len(augmented)
    for (x, y), (xa, ya), (xb, yb) in zip(plain, augmented, again):
        assert np.array_equal(y, ya) and xa.shape == x.shape and xa.dtype == np.float32
        assert np.array_equal(xa, xb)  # the same seed and epoch: the same features
        assert not np.array_equal(xa, x)
    other = batches(amounts, epoch=1)
    assert not np.array_equal(other[0][0], augmented[0][0])


def test_full_batch_low_rank_models_refuse_augmentation():
    from lowrank_amt import families
    family, spec_full = families.resolve({"family": "nmf", "supervision": "semi_supervised", "form": "full_batch"})
    assert family.skip({**spec_full, "augment": {"gain_db": 3}}) == (
        True, "model key 'augment' is for the mini-batch forms ('online_mu', 'gradient'), which read batches")
    family, spec_online = families.resolve({"family": "nmf", "supervision": "semi_supervised", "form": "online_mu",
                                            "augment": {"gain_db": 3}})
    assert family.skip(spec_online) == (False, "")
