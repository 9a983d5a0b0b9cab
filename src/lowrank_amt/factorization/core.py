"""The numerical core shared by every low-rank family: beta-divergences and
multiplicative updates (MU) in PyTorch, on CPU or CUDA.

Conventions follow Fevotte & Idier (2011) and scikit-learn's ``_nmf.py``: the
divergence is summed over entries; the MU exponent gamma(beta) makes each update
non-increasing for every beta; an ``eps`` floor keeps factors strictly positive.

Every family (NMF, NMFD, NTD) is a model V ~ V_hat that is linear in each factor with
nonnegative coefficients, so each factor's MU has the same shape:
``X <- X * (grad_neg / grad_pos) ** gamma`` with grad_neg = A^T (V * V_hat^(beta-2)) and
grad_pos = A^T V_hat^(beta-1) for the factor's linear map A. ``ratio_terms`` gives the two
tensors A^T is applied to; ``mu_step`` applies the update.
"""

from __future__ import annotations

import torch

EPS = 1e-10


def beta_divergence(V: torch.Tensor, V_hat: torch.Tensor, beta: float, eps: float = EPS) -> torch.Tensor:
    """Sum over entries of d_beta(V | V_hat), V_hat floored at ``eps``.

    For beta = 1 an entry with V = 0 contributes V_hat (0 log 0 = 0, as scikit-learn);
    beta = 1 and 2 use one temporary and a dot product (the loss is computed every
    iteration, so it must not cost as much as the update)."""
    V_hat = V_hat.clamp_min(eps)
    if beta == 2:
        diff = (V - V_hat).reshape(-1)
        return 0.5 * torch.dot(diff, diff)
    if beta == 1:
        # log(V / V_hat) where V > 0; the floor only turns log 0 into a finite number times 0
        ratio = torch.div(V, V_hat)
        if V.requires_grad or V_hat.requires_grad:  # autograd needs the intermediates kept
            log_ratio = ratio.clamp_min(torch.finfo(V.dtype).tiny).log()
        else:
            log_ratio = ratio.clamp_min_(torch.finfo(V.dtype).tiny).log_()
        return torch.dot(V.reshape(-1), log_ratio.reshape(-1)) - V.sum() + V_hat.sum()
    V = V.clamp_min(eps)
    if beta == 0:
        ratio = V / V_hat
        return (ratio - torch.log(ratio) - 1).sum()
    return ((V ** beta + (beta - 1) * V_hat ** beta - beta * V * V_hat ** (beta - 1))
            / (beta * (beta - 1))).sum()


def mu_exponent(beta: float) -> float:
    """gamma(beta) of Fevotte & Idier (2011), which makes MU monotone for every beta."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def ratio_terms(V: torch.Tensor, V_hat: torch.Tensor, beta: float):
    """(V * V_hat^(beta-2), V_hat^(beta-1)): the two factors of the MU gradient split.
    For beta = 1 the second is all ones and returned as None (callers use sums)."""
    if beta == 1:
        return V / V_hat, None  # the denominator term is all ones: handled by sums
    if beta == 2:
        return V, V_hat
    return V * V_hat ** (beta - 2), V_hat ** (beta - 1)


def update_H(V, W, H, beta: float, l1: float = 0.0, eps: float = EPS, *,
             mask: torch.Tensor | None = None, V_hat: torch.Tensor | None = None) -> torch.Tensor:
    """One MU step on H for V ~ W H (W fixed); returns the new H. ``V_hat``: W H
    floored at ``eps``, when the caller already has it; ``mask`` as in ``mu_step``."""
    if V_hat is None:
        V_hat = (W @ H).clamp_min_(eps)
    num_term, den_term = ratio_terms(V, V_hat, beta)
    # beta = 1: W^T times ones is W's column sums, broadcast over frames
    denominator = W.sum(dim=0)[:, None] if den_term is None else W.T @ den_term
    return mu_step(H, W.T @ num_term, denominator, beta, l1, mask, eps)


def mu_step(X: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, beta: float,
            l1: float = 0.0, mask: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """The multiplicative update X * (numerator / (denominator + l1)) ** gamma(beta).

    ``denominator`` may be any shape that broadcasts to X's. The result is floored at
    ``eps``; where ``mask`` is 0 it is exactly 0 (a zero stays a zero under MU, which is
    how activations are confined to a piano roll). One new tensor, updated in place.
    """
    if l1:
        denominator = denominator + l1
    step = torch.div(numerator, denominator.clamp_min(eps))
    gamma = mu_exponent(beta)
    if gamma != 1:
        step.pow_(gamma)
    step = step.mul_(X).clamp_min_(eps)
    return step if mask is None else step.mul_(mask)


def generator(seed: int) -> torch.Generator:
    """A CPU generator: draws made on it and then moved give the same values on every device."""
    return torch.Generator().manual_seed(int(seed))


def positive_rand(shape, scale: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform draws in [eps, scale + eps), on ``like``'s device and dtype."""
    return (torch.rand(*shape, generator=gen, dtype=like.dtype) * scale + EPS).to(like.device)
