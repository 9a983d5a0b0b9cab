"""The MU core: monotone for every beta, and equal to scikit-learn's MU from the same start."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from lowrank_amt.factorization.core import beta_divergence
from lowrank_amt.factorization.nmf import nmf


def _data(seed=0, shape=(40, 60), rank=5):
    rng = np.random.default_rng(seed)
    V = rng.gamma(1.0, 1.0, (shape[0], rank)) @ rng.gamma(1.0, 1.0, (rank, shape[1]))
    return torch.tensor(V + 0.01 * rng.random(shape), dtype=torch.float64)


@pytest.mark.parametrize("beta", [0, 0.5, 1, 1.5, 2, 2.5])
def test_multiplicative_updates_never_increase_the_divergence(beta):
    _, _, losses = nmf(_data(), rank=5, beta=beta, n_iter=60, seed=1)
    steps = np.diff(losses)
    assert np.all(steps <= 1e-9 * np.abs(losses[:-1])), steps.max()
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("beta", [0, 1, 2, 3])
def test_beta_divergence_matches_scikit_learn(beta):
    from sklearn.decomposition._nmf import _beta_divergence
    rng = np.random.default_rng(3)
    X, W, H = rng.random((6, 7)) + 0.1, rng.random((6, 2)) + 0.1, rng.random((2, 7)) + 0.1
    ours = float(beta_divergence(torch.tensor(X), torch.tensor(W @ H), beta))
    assert ours == pytest.approx(_beta_divergence(X, W, H, beta), rel=1e-9)


@pytest.mark.parametrize("beta", [1, 2])
def test_beta_divergence_of_data_with_zeros_matches_scikit_learn(beta):
    """Silent bins are exact zeros in spectrograms: 0 log 0 counts as 0, as scikit-learn's."""
    from sklearn.decomposition._nmf import _beta_divergence
    rng = np.random.default_rng(5)
    X, W, H = rng.random((6, 7)), rng.random((6, 2)) + 0.1, rng.random((2, 7)) + 0.1
    X[X < 0.4] = 0.0
    ours = float(beta_divergence(torch.tensor(X), torch.tensor(W @ H), beta))
    assert ours == pytest.approx(_beta_divergence(X, W, H, beta), rel=1e-9)


def test_least_squares_start_beats_ten_steps_from_a_constant_start():
    """One KL-MU step from nmf's start (least squares, floored) fits better than ten
    from the constant start that reproduces the data's mean."""
    from lowrank_amt.factorization import nmf as family
    from lowrank_amt.factorization.core import update_H
    rng = np.random.default_rng(6)
    W = torch.tensor(rng.gamma(0.3, 1.0, (60, 12)))
    V = W @ torch.tensor(rng.gamma(0.5, 1.0, (12, 300)) * (rng.random((12, 300)) < 0.2)) + 0.01
    H = family.init_activations(V, W)["H"]
    assert torch.all(H > 0)
    one_step = float(beta_divergence(V, W @ update_H(V, W, H, 1.0), 1.0))
    H = torch.full_like(H, float(V.mean() / W.sum(dim=1).mean()))
    for _ in range(10):
        H = update_H(V, W, H, 1.0)
    assert one_step < 0.5 * float(beta_divergence(V, W @ H, 1.0))


@pytest.mark.parametrize("beta", [1, 2])
def test_nmf_loss_equals_scikit_learn_mu_from_the_same_start(beta):
    V = _data(seed=2).numpy()
    rng = np.random.default_rng(4)
    W0, H0 = rng.random((V.shape[0], 5)) + 0.1, rng.random((5, V.shape[1])) + 0.1
    n_iter = 50
    model = NMF(5, solver="mu", beta_loss=beta, init="custom", max_iter=n_iter, tol=0)
    W_sk = model.fit_transform(V, W=W0.copy(), H=H0.copy())
    from sklearn.decomposition._nmf import _beta_divergence
    sk_loss = _beta_divergence(V, W_sk, model.components_, beta)
    # scikit-learn updates W before H; ours updates H before W, so factor V.T, whose
    # "H" is W.T: the same sequence of updates.
    _, _, losses = nmf(torch.tensor(V.T), 5, beta, n_iter, W=torch.tensor(H0.T.copy()),
                       H=torch.tensor(W0.T.copy()))
    assert losses[-1] == pytest.approx(sk_loss, rel=1e-3)
