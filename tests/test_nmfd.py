"""Convolutive NMF: the model against an explicit sum over lags, its MU terms against
autograd, monotone MU, T = 1 equal to NMF, and planted templates recovered."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from lowrank_amt.factorization import core, nmf, nmfd
from lowrank_amt.factorization.core import beta_divergence, generator
from lowrank_amt.factorization.training import fit_full_batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def explicit_reconstruction(W, H):
    """sum_t W[t] @ H delayed by t frames, with plain NumPy loops."""
    T, F, K = W.shape
    N = H.shape[1]
    V = np.zeros((F, N))
    for t in range(T):
        for n in range(t, N):
            V[:, n] += W[t] @ H[:, n - t]
    return V


def test_reconstruction_is_the_sum_over_lags():
    rng = np.random.default_rng(0)
    W, H = rng.random((3, 5, 2)), rng.random((2, 9))
    ours = nmfd.reconstruct(torch.tensor(W), {"H": torch.tensor(H)}).numpy()
    assert np.allclose(ours, explicit_reconstruction(W, H))
    batched = nmfd.reconstruct(torch.tensor(W), {"H": torch.tensor(np.stack([H, 2 * H]))}).numpy()
    assert np.allclose(batched[1], 2 * explicit_reconstruction(W, H))


@pytest.mark.parametrize("beta", [0, 1, 1.5, 2])
def test_mu_terms_split_the_gradient(beta):
    """MU uses gradient = denominator - numerator; check both factors against autograd."""
    rng = np.random.default_rng(1)
    V = torch.tensor(rng.random((2, 6, 7)) + 0.1)
    W = torch.tensor(rng.random((3, 6, 2)) + 0.1, requires_grad=True)
    H = torch.tensor(rng.random((2, 2, 7)) + 0.1, requires_grad=True)
    beta_divergence(V, nmfd.reconstruct(W, {"H": H}), beta).backward()
    num_W, den_W = nmfd.dictionary_terms(V, W.detach(), {"H": H.detach()}, beta)
    assert torch.allclose(den_W - num_W, W.grad)
    # H's terms, through one MU step with exponent 1 recovered from the ratio
    V_hat = nmfd.reconstruct(W.detach(), {"H": H.detach()})
    num_term, den_term = core.ratio_terms(V, V_hat, beta)
    den_term = torch.ones_like(V) if den_term is None else den_term
    grad_H = nmfd._adjoint_H(W.detach(), den_term) - nmfd._adjoint_H(W.detach(), num_term)
    assert torch.allclose(grad_H, H.grad)


@pytest.mark.parametrize("beta", [0, 1, 2])
def test_full_batch_mu_never_increases_the_divergence(beta):
    rng = np.random.default_rng(2)
    V = torch.tensor(rng.gamma(1.0, 1.0, (12, 40)) + 0.01)
    W0 = nmfd.init_dictionary(12, 3, 0.5, generator(0), V, time_extent=4)
    _, _, losses = fit_full_batch(nmfd, V, W0, beta=beta, n_iter=40)
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))
    assert losses[-1] < 0.7 * losses[0]


def test_one_frame_templates_are_nmf():
    rng = np.random.default_rng(3)
    V = torch.tensor(rng.random((8, 20)) + 0.1)
    W0, H0 = torch.tensor(rng.random((8, 3)) + 0.1), torch.tensor(rng.random((3, 20)) + 0.1)
    W_nmf, _, losses_nmf = nmf.nmf(V, 3, 1.0, 15, W=W0.clone(), H=H0.clone())
    acts = {"H": H0.clone()}
    W = W0[None].clone()
    for _ in range(15):
        acts = nmfd.activation_step(V, W, acts, 1.0)
        W = core.mu_step(W, *nmfd.dictionary_terms(V, W, acts, 1.0), 1.0)
    assert torch.allclose(W[0], W_nmf)


def best_correlations(truth, found):
    C = np.corrcoef(truth.T, found.T)[: truth.shape[1], truth.shape[1]:]
    rows, cols = linear_sum_assignment(-C)
    return C[rows, cols]


def test_planted_templates_are_recovered():
    """Data made from 3 known 4-frame templates and sparse onsets; the best of three
    random starts (by loss, no peeking at the truth) recovers every template."""
    rng = np.random.default_rng(0)
    T, F, K, N = 4, 40, 3, 400
    W_true = 0.01 * rng.random((T, F, K))
    for k in range(K):
        for t in range(T):
            W_true[t, rng.choice(F, 6, replace=False), k] += rng.uniform(0.5, 1, 6) * np.exp(-t / 2)
    H_true = (rng.random((K, N)) < 0.05) * rng.uniform(0.5, 1.5, (K, N))
    V = nmfd.reconstruct(torch.tensor(W_true), {"H": torch.tensor(H_true)}) + 1e-3
    fits = []
    for seed in range(3):
        W0 = nmfd.init_dictionary(F, K, float((V.mean() / K).sqrt()), generator(seed), V, time_extent=T)
        W, _, losses = fit_full_batch(nmfd, V, W0, beta=1.0, n_iter=500)
        fits.append((losses[-1], W.numpy()))
    _, W = min(fits, key=lambda fit: fit[0])
    assert best_correlations(W_true.reshape(T * F, K), W.reshape(T * F, K)).min() > 0.95
