"""The note-state decoder (note_states.py, onset rule "states" of decode.py)."""

import numpy as np
import pytest

from lowrank_amt.decoding.decode import activations_to_notes
from lowrank_amt.decoding.tuning import tune_decoding
from lowrank_amt.decoding.note_states import fit_transitions, notes_roll, viterbi_on

FRAME_RATE = 43.0


def activations(seed=0, keys=88, frames=400):
    """Decaying notes on random keys, with noise and ripples: a plausible activation."""
    rng = np.random.default_rng(seed)
    H = rng.uniform(0, 0.03, (keys, frames))
    for _ in range(40):
        key, start, length = rng.integers(keys), rng.integers(frames - 20), rng.integers(5, 60)
        t = np.arange(min(length, frames - start))
        H[key, start:start + len(t)] += rng.uniform(0.1, 1.0) * np.exp(-t / 20) * (1 + 0.1 * np.sin(t))
    return H


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uninformative_transitions_give_the_threshold_decoder(seed):
    H = activations(seed)
    for threshold in (0.05, 0.2):
        assert np.array_equal(viterbi_on(H / H.max(), threshold, 1.0, 0.5, 0.5), H / H.max() >= threshold)
        states = activations_to_notes(H, FRAME_RATE, threshold, onset="states", state_p_on=0.5, state_p_off=0.5,
                                      onset_dip=0.0)  # a dip to 0: no key is re-struck within a note
        plain = activations_to_notes(H, FRAME_RATE, threshold, onset="threshold")
        for a, b in zip(states, plain):
            np.testing.assert_array_equal(a, b)


def test_viterbi_finds_the_best_path_of_a_short_chain_by_brute_force():
    import itertools
    rng = np.random.default_rng(3)
    h = rng.uniform(0.01, 1.0, 9)
    threshold, slope, p_on, p_off = 0.3, 1.5, 0.1, 0.2
    log_t = {(0, 0): np.log(1 - p_on), (0, 1): np.log(p_on), (1, 0): np.log(p_off), (1, 1): np.log(1 - p_off)}
    evidence = slope * np.log(h / threshold)

    def score(path):
        return sum(evidence[t] for t, s in enumerate(path) if s) + sum(log_t[a, b] for a, b in zip(path, path[1:]))
    best = max(itertools.product((0, 1), repeat=len(h)), key=score)
    assert viterbi_on(h[None], threshold, slope, p_on, p_off)[0].astype(int).tolist() == list(best)


def test_fitted_transitions_remove_blips_and_bridge_gaps():
    h = np.full(100, 0.01)
    h[10:60] = 0.5
    h[30:32] = 0.05   # a two-frame dip inside a note
    h[80] = 0.5       # a one-frame blip
    p_on, p_off = 0.003, 0.02
    on = viterbi_on(h[None], 0.1, 1.0, p_on, p_off)[0]
    assert on[10:60].all() and not on[60:].any() and not on[:10].any()
    plain = h >= 0.1
    assert not plain[30] and plain[80]


def test_transitions_are_counted_on_rolls():
    roll = np.zeros((2, 10), bool)
    roll[0, 2:6] = True  # one onset, one offset; of the 18 frames with a successor, 4 are on
    p_on, p_off = fit_transitions([roll])
    assert p_on == pytest.approx((1 + 1) / (2 + 14)) and p_off == pytest.approx((1 + 1) / (2 + 4))
    assert np.array_equal(notes_roll([[2 / FRAME_RATE, 6 / FRAME_RATE]], [21], 10, FRAME_RATE)[0], roll[0])


def test_tuning_fits_the_transitions_on_the_validation_references_and_searches_the_slope():
    H = activations(4)
    intervals, pitches, _ = activations_to_notes(H, FRAME_RATE, 0.1, onset="threshold")
    tracks = [(H, intervals, pitches)]
    params, trials = tune_decoding(tracks, {"threshold": [0.1], "onset": ["threshold", "states"],
                                            "state_slope": [0.5, 2.0]}, FRAME_RATE)
    expected = fit_transitions([notes_roll(intervals, pitches, H.shape[1], FRAME_RATE)])
    assert (params["state_p_on"], params["state_p_off"]) == expected
    tried = [(t["onset"], t["state_slope"]) for t in trials if t["stage"] == "onset"]
    assert tried == [("threshold", 0.5), ("states", 0.5), ("states", 2.0)]  # the slope only with its rule


def test_a_re_strike_inside_a_sounding_note_starts_a_new_note():
    h = np.full((1, 120), 0.01)
    h[0, 10:100] = np.concatenate([np.linspace(1, 0.3, 40), np.linspace(0.9, 0.2, 50)])  # struck again at 50
    notes = activations_to_notes(h, FRAME_RATE, 0.1, onset="states", state_p_on=0.003, state_p_off=0.02,
                                 onset_dip=0.5)
    assert notes[0][:, 0].tolist() == pytest.approx([10 / FRAME_RATE, 50 / FRAME_RATE])
    single = activations_to_notes(h, FRAME_RATE, 0.1, onset="states", state_p_on=0.003, state_p_off=0.02,
                                  onset_dip=0.0)
    assert len(single[0]) == 1


@pytest.mark.parametrize("onset", ["peaks", "adaptive"])
def test_a_lower_onset_dip_asks_a_deeper_fall_before_a_key_is_struck_again(onset):
    h = np.full((1, 120), 0.01)
    h[0, 10:100] = np.concatenate([np.linspace(1, 0.3, 40), np.linspace(0.6, 0.2, 50)])  # falls to 0.3, peaks at 0.6
    starts = {dip: activations_to_notes(h, FRAME_RATE, 0.1, onset=onset, onset_dip=dip)[0][:, 0]
              for dip in (0.7, 0.3)}
    assert len(starts[0.7]) == 2 and len(starts[0.3]) == 1  # 0.3 < 0.7 * 0.6, but not < 0.3 * 0.6
