"""Convolutive NMF (NMFD, Smaragdis 2004): templates with a time extent.

    V ~ V_hat = sum_{t=0}^{T-1} W[t] @ shift(H, t)

V is bins x frames (F x N), or a batch of segments (B x F x N) factored independently;
W is T x F x K: template k is the spectrogram patch W[:, :, k] of T frames, so one
template holds a note's attack and its decay; H (K x N, or B x K x N) marks where each
template starts; shift(H, t) delays H by t frames, filling with zeros.

V_hat is linear in H and in W with nonnegative coefficients, so the beta-divergence MU
of core.py applies to each (all W[t] at once) and never increases the divergence. With
T = 1 this is NMF.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LowrankAmtError
from .core import EPS, beta_divergence, mu_step, positive_rand, ratio_terms


def shift(X: torch.Tensor, t: int) -> torch.Tensor:
    """X delayed by t frames along its last axis, zeros in front."""
    if t == 0:
        return X
    return torch.nn.functional.pad(X[..., :-t], (t, 0)) if t < X.shape[-1] else torch.zeros_like(X)


def unshift(X: torch.Tensor, t: int) -> torch.Tensor:
    """The adjoint of ``shift``: X advanced by t frames, zeros at the end."""
    if t == 0:
        return X
    return torch.nn.functional.pad(X[..., t:], (0, t)) if t < X.shape[-1] else torch.zeros_like(X)


def _check(V, W):
    if W.ndim != 3 or W.shape[1] != V.shape[-2]:
        raise LowrankAmtError(f"NMFD templates must be T x F x K with F = {V.shape[-2]} bins, got {tuple(W.shape)}")


def reconstruct(W, activations) -> torch.Tensor:
    """sum_t W[t] @ shift(H, t), as one 1-D convolution over frames (K channels in, F out,
    the lags flipped into a kernel of T taps): faster than a matmul per lag and its
    shifted sum, above all under autograd (whose slices' gradients fill zeros)."""
    H = activations["H"]
    T = W.shape[0]
    return torch.nn.functional.conv1d(torch.nn.functional.pad(H, (T - 1, 0)), W.flip(0).permute(1, 2, 0))


def loss(V, W, activations, beta: float):
    """(beta-divergence of V from its reconstruction, the reconstruction floored at EPS)."""
    V_hat = reconstruct(W, activations).clamp_min_(EPS)
    return beta_divergence(V, V_hat, beta), V_hat


def _adjoint_H(W, R):
    """sum_t unshift(W[t]^T @ R, t): the transpose of the map H -> V_hat, applied to R, as
    one 1-D convolution (F channels in, K out)."""
    T = W.shape[0]
    return torch.nn.functional.conv1d(torch.nn.functional.pad(R, (0, T - 1)), W.permute(2, 1, 0))


def activation_step(V, W, activations, beta: float, l1: float = 0.0, mask=None, V_hat=None) -> dict:
    """One MU step on H (``V_hat``: the current reconstruction floored at EPS, if known)."""
    numerator, denominator = activation_terms(V, W, activations, beta, V_hat)
    return {"H": mu_step(activations["H"], numerator, denominator, beta, l1, mask)}


def activation_terms(V, W, activations, beta: float, V_hat=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(numerator, denominator) of the MU step on H, out of place (autograd goes through it)."""
    _check(V, W)
    H = activations["H"]
    V_hat = reconstruct(W, activations).clamp_min(EPS) if V_hat is None else V_hat
    num_term, den_term = ratio_terms(V, V_hat, beta)
    if den_term is None:
        # beta = 1: the adjoint of a matrix of ones; at frame n only lags t < N - n count
        column_sums = W.sum(dim=1).cumsum(dim=0)  # (T, K): sum over lags <= t
        last_lag = (H.shape[-1] - 1 - torch.arange(H.shape[-1], device=H.device)).clamp(max=W.shape[0] - 1)
        denominator = column_sums[last_lag].T.expand_as(H)
    else:
        denominator = _adjoint_H(W, den_term)
    return _adjoint_H(W, num_term), denominator


def dictionary_terms(V, W, activations, beta: float, V_hat=None, mask=None):
    """(numerator, denominator) of the MU step on all of W (T x F x K); ``mask`` unused:
    masked activations are zero already."""
    _check(V, W)
    H = activations["H"]
    V_hat = reconstruct(W, activations).clamp_min_(EPS) if V_hat is None else V_hat
    num_term, den_term = ratio_terms(V, V_hat, beta)
    N = H.shape[-1]
    numerator, denominator = torch.zeros_like(W), torch.zeros_like(W)
    for t in range(min(W.shape[0], N)):
        H_t = H[..., : N - t]  # shift(H, t) without its leading zeros
        numerator[t] = (num_term[..., t:] @ H_t.transpose(-1, -2)).reshape(-1, *W.shape[1:]).sum(0)
        if den_term is None:
            denominator[t] = H_t.sum(dim=-1).reshape(-1, W.shape[2]).sum(0)[None, :]
        else:
            denominator[t] = (den_term[..., t:] @ H_t.transpose(-1, -2)).reshape(-1, *W.shape[1:]).sum(0)
    return numerator, denominator


def init_dictionary(n_bins: int, rank: int, scale: float, gen: torch.Generator,
                    like: torch.Tensor, time_extent: int = 8, **_) -> torch.Tensor:
    """Random W (T x F x K), entries sized so that V_hat has V's scale."""
    return positive_rand((time_extent, n_bins, rank), scale / np.sqrt(time_extent), gen, like)


def init_activations(V, W, gen=None, mask=None, mean=None, **_) -> dict:
    """Constant H whose reconstruction has V's mean (or ``mean``: live transcription
    gives the recent audio's, a short window's own being a poor guide); zero outside
    ``mask``."""
    level = (V.mean() if mean is None else mean) / W.sum(dim=(0, 2)).mean().clamp_min(EPS)
    shape = (*V.shape[:-2], W.shape[2], V.shape[-1])
    H = torch.full(shape, float(level.detach()), dtype=V.dtype, device=V.device)
    return {"H": H if mask is None else H * mask}


def key_activations(activations) -> torch.Tensor:
    """Template onsets over frames (K x N); a batch of segments is laid end to end."""
    H = activations["H"]
    return H if H.ndim == 2 else H.transpose(0, 1).reshape(H.shape[1], -1)


def spectral_templates(W: np.ndarray) -> np.ndarray:
    """Each template's spectrum summed over its frames (bins x templates), for pitch."""
    return W.sum(axis=0)
