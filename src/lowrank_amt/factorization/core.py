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


def pick_device(setting: str = "auto") -> torch.device:
    """``auto`` takes CUDA when this process sees a GPU, else the CPU."""
    if setting == "cuda" and not torch.cuda.is_available():
        from ..errors import LowrankAmtError
        raise LowrankAmtError("config asks for device 'cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def beta_divergence(V: torch.Tensor, V_hat: torch.Tensor, beta: float, eps: float = EPS) -> torch.Tensor:
    """Sum over entries of d_beta(V | V_hat)."""
    V_hat = V_hat.clamp_min(eps)
    if beta == 2:
        return 0.5 * ((V - V_hat) ** 2).sum()
    V = V.clamp_min(eps)
    if beta == 1:
        return (V * torch.log(V / V_hat) - V + V_hat).sum()
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


def update_H(V, W, H, beta: float, l1: float = 0.0, eps: float = EPS) -> torch.Tensor:
    """One MU step on H for V ~ W H (W fixed); returns the new H."""
    V_hat = (W @ H).clamp_min(eps)
    num_term, den_term = ratio_terms(V, V_hat, beta)
    numerator = W.T @ num_term
    if den_term is None:
        denominator = W.sum(dim=0, keepdim=True).T.expand_as(H)
    else:
        denominator = W.T @ den_term
    if l1:
        denominator = denominator + l1
    return (H * (numerator / denominator.clamp_min(eps)) ** mu_exponent(beta)).clamp_min(eps)


def update_W(V, W, H, beta: float, eps: float = EPS) -> torch.Tensor:
    """One MU step on W for V ~ W H (H fixed); returns the new W."""
    return update_H(V.T, H.T, W.T, beta, eps=eps).T


def mu_step(X: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, beta: float,
            l1: float = 0.0, mask: torch.Tensor | None = None, eps: float = EPS) -> torch.Tensor:
    """The multiplicative update X * (numerator / (denominator + l1)) ** gamma(beta).

    The result is floored at ``eps``; where ``mask`` is 0 it is exactly 0 (a zero stays
    a zero under MU, which is how activations are confined to a piano roll).
    """
    if l1:
        denominator = denominator + l1
    X = (X * (numerator / denominator.clamp_min(eps)) ** mu_exponent(beta)).clamp_min(eps)
    return X if mask is None else X * mask


def generator(seed: int) -> torch.Generator:
    """A CPU generator: draws made on it and then moved give the same values on every device."""
    return torch.Generator().manual_seed(int(seed))


def positive_rand(shape, scale: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform draws in [eps, scale + eps), on ``like``'s device and dtype."""
    return (torch.rand(*shape, generator=gen, dtype=like.dtype) * scale + EPS).to(like.device)
