"""Nonnegative Tucker: segmenting, MU terms against autograd, monotone MU, equal to
tensorly's non_negative_tucker from the same start, planted dictionary recovered."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.factorization import ntd
from lowrank_amt.factorization.activations import track_activations
from lowrank_amt.factorization.core import beta_divergence, generator
from lowrank_amt.factorization.training import fit_full_batch
from lowrank_amt.families import resolve


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_segments_are_consecutive_frames():
    features = torch.arange(2 * 7, dtype=torch.float64).reshape(2, 7)
    X = ntd.segment(features, 3)
    assert X.shape == (3, 2, 3)
    assert torch.equal(X[1], features[:, 3:6])
    assert torch.equal(X[2, :, :1], features[:, 6:]) and torch.all(X[2, :, 1:] < 1e-9)


def test_reconstruction_is_the_tucker_product():
    rng = np.random.default_rng(0)
    G, Q, W, P = rng.random((2, 3, 2)), rng.random((4, 2)), rng.random((5, 3)), rng.random((6, 2))
    expected = np.einsum("lkj,sl,fk,tj->sft", G, Q, W, P)
    ours = ntd.reconstruct(torch.tensor(W), {"G": torch.tensor(G), "Q": torch.tensor(Q), "P": torch.tensor(P)})
    assert np.allclose(ours.numpy(), expected)


@pytest.mark.parametrize("beta", [0, 1, 1.5, 2])
def test_mu_terms_split_the_gradient(beta):
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.random((4, 6, 5)) + 0.1)
    factors = {name: torch.tensor(rng.random(shape) + 0.1, requires_grad=True)
               for name, shape in (("G", (2, 3, 2)), ("Q", (4, 2)), ("W", (6, 3)), ("P", (5, 2)))}
    beta_divergence(X, ntd.reconstruct(factors["W"], factors), beta).backward()
    plain = {name: f.detach() for name, f in factors.items()}
    for name in ("G", "Q", "W", "P"):
        numerator, denominator = ntd._factor_terms(name, X, plain["W"], plain, beta)
        assert torch.allclose(denominator - numerator, factors[name].grad), name


@pytest.mark.parametrize("beta", [0, 1, 2])
def test_mu_never_increases_the_divergence(beta):
    X = torch.tensor(np.random.default_rng(2).gamma(1.0, 1.0, (8, 10, 6)) + 0.01)
    _, _, losses = ntd.ntd(X, (3, 4, 2), beta, 40, seed=1)
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))
    assert losses[-1] < 0.8 * losses[0]


def test_euclidean_ntd_matches_tensorly_from_the_same_start():
    import tensorly as tl
    from tensorly.decomposition import non_negative_tucker
    from tensorly.decomposition._tucker import initialize_tucker
    X = np.random.default_rng(0).random((10, 12, 8)) + 0.05
    ranks = [3, 4, 2]
    core0, factors0 = initialize_tucker(X, ranks, range(3), init="random", random_state=1, non_negative=True)
    theirs = non_negative_tucker(X, ranks, n_iter_max=60, init="random", random_state=1, tol=0)
    their_error = np.linalg.norm(X - tl.tucker_to_tensor(theirs)) / np.linalg.norm(X)
    _, _, losses = ntd.ntd(torch.tensor(X), tuple(ranks), 2.0, 60, core=torch.tensor(core0),
                           factors=[torch.tensor(f) for f in factors0])
    our_error = np.sqrt(2 * losses[-1]) / np.linalg.norm(X)  # beta = 2 is half the squared error
    assert our_error == pytest.approx(their_error, rel=0.01)
    assert our_error < 0.9 * np.sqrt(2 * losses[0]) / np.linalg.norm(X)  # it did fit


def test_planted_dictionary_is_recovered():
    """A tensor made from a known dictionary W (4 templates), temporal patterns P, a
    sparse core and sparse segment loadings: full-batch NTD through the training loop,
    best of three random starts by loss (no peeking at the truth), finds every template
    of W; every run is monotone."""
    rng = np.random.default_rng(0)
    F, K, S, T = 40, 4, 60, 8
    W_true = 0.01 * rng.random((F, K))
    for k in range(K):
        W_true[8 * k: 8 * k + 10, k] += rng.uniform(0.5, 1, 10)
    P = np.stack([np.exp(-np.arange(T) / 2), np.exp(-np.abs(np.arange(T) - 4)), np.full(T, 0.3)], axis=1)
    Q = rng.random((S, 5)) * (rng.random((S, 5)) < 0.4)
    G = np.zeros((5, K, 3))
    for l in range(5):
        for k in rng.choice(K, 2, replace=False):
            G[l, k, rng.integers(3)] = rng.uniform(0.5, 1)
    X = torch.tensor(np.einsum("lkj,sl,fk,tj->sft", G, Q, W_true, P) + 1e-3)
    fits = []
    for seed in range(3):
        W0 = ntd.init_dictionary(F, K, float((X.mean() / K).sqrt()), generator(seed), X)
        W, _, losses = fit_full_batch(ntd, X, W0, beta=1.0, n_iter=300, seed=seed,
                                      options={"time_rank": 3, "segment_rank": 5})
        assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))
        fits.append((losses[-1], W.numpy()))
    _, W = min(fits, key=lambda fit: fit[0])
    C = np.corrcoef(W_true.T, W.T)[:K, K:]
    rows, cols = linear_sum_assignment(-C)
    assert C[rows, cols].min() > 0.95


def test_transcription_ranks_free_the_segment_and_time_factors():
    """A track of 12 segments, each playing its own two keys with its own decay: with
    the dictionary fixed, the training ranks (2, 2) cannot follow it; with
    ``transcribe_segment_rank`` 12 and ``transcribe_time_rank`` 8 (one per segment and
    frame) the key activations are the planted ones."""
    rng = np.random.default_rng(0)
    F, K, S, T = 40, 6, 12, 8
    W = 0.01 * rng.random((F, K))
    for k in range(K):
        W[6 * k: 6 * k + 8, k] += rng.uniform(0.5, 1, 8)
    W = (W / W.sum(axis=0)).astype(np.float32)
    H = np.zeros((K, S * T))
    for s in range(S):
        for k in rng.choice(K, 2, replace=False):
            H[k, s * T: (s + 1) * T] = rng.uniform(0.5, 1) * np.exp(-np.arange(T) / rng.uniform(2, 8))
    errors = []
    for ranks in ({}, {"transcribe_segment_rank": S, "transcribe_time_rank": T}):
        family, spec = resolve({"family": "ntd", "segment_frames": T, "segment_rank": 2, "time_rank": 2,
                                "transcribe_iterations": 300, **ranks})
        A = track_activations(family, W @ H + 1e-3, W, np.arange(K), spec, torch.device("cpu"))["note"][:K]
        errors.append(np.linalg.norm(A - H) / np.linalg.norm(H))
    assert errors[1] < 0.1 < 0.5 < errors[0]


def test_transcription_ranks_are_refused_outside_ntd():
    with pytest.raises(LowrankAmtError, match="transcribe_segment_rank"):
        resolve({"family": "nmf", "transcribe_segment_rank": 64})


def test_semi_supervised_ntd_learns_the_played_keys_templates(cache_builder, tmp_path, monkeypatch):
    """The roll penalty confines most activation mass to the rolls and each played key's
    template matches its true one; without the penalty (weight 0: unsupervised NTD) the
    templates are not the keys' and most of the mass is elsewhere."""
    folder, W_true = cache_builder(tmp_path, (("train", 3),), notes_per_track=30, key_spacing=0.3, key_hold=0.25)
    V = torch.cat([ntd.segment(torch.from_numpy(np.load(folder / f"train_{i}.npy")).double(), 16) for i in range(3)])
    M = torch.cat([ntd.segment(torch.from_numpy(np.load(folder / f"train_{i}.roll.npy")).double(), 16)
                   for i in range(3)]).round()
    played = np.flatnonzero(M.sum(dim=(0, 2)).numpy() > 20)
    results = {}
    for penalty in (0.0, ntd.ROLL_PENALTY):
        monkeypatch.setattr(ntd, "ROLL_PENALTY", penalty)
        W0 = ntd.init_dictionary(264, 88, float((V.mean() / 88).sqrt()), generator(0), V)
        W, activations, losses = fit_full_batch(ntd, V, W0, beta=1.0, n_iter=300, mask=M,
                                                options={"time_rank": 8, "segment_rank": 32})
        A = ntd.activation_tensor(activations["G"], activations["Q"], activations["P"]) * W.sum(dim=0)[None, :, None]
        W = (W / W.sum(dim=0)).numpy()
        results[penalty] = (float((A * (1 - M)).sum() / A.sum()),
                            np.median([np.corrcoef(W[:, k], W_true[:, k])[0, 1] for k in played]))
    outside, correlation = results[ntd.ROLL_PENALTY]
    assert outside < 0.2 and correlation > 0.9, results
    assert results[0.0][0] > 0.5 and results[0.0][1] < 0.5, results
