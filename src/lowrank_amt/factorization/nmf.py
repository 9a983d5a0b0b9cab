"""NMF, V ~ W H, by beta-divergence multiplicative updates: a functional entry point
(``nmf``, a thin wrapper of the shared full-batch loop that a test holds equal to
scikit-learn's MU) and learning one template per piano key from isolated notes
(``learn_supervised_templates``).

It also holds the numerics that ``training.py`` drives (the same functions exist in
``nmfd.py`` and ``ntd.py``): V is bins x frames (F x N), the dictionary W is F x K, the
activations are ``{"H": K x N}``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..constants import MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from .core import EPS, beta_divergence, positive_rand, ratio_terms, update_H


def nmf(V: torch.Tensor, rank: int, beta: float = 1.0, n_iter: int = 100, *,
        W: torch.Tensor | None = None, H: torch.Tensor | None = None,
        update_dictionary: bool = True, l1: float = 0.0, tol: float = 0.0,
        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Factor nonnegative V (F x N) into W (F x rank) and H (rank x N).

    W and H default to random inits scaled like sqrt(mean(V) / rank). With
    ``update_dictionary=False`` W stays fixed. Stops after ``n_iter`` iterations or when
    the relative loss decrease falls under ``tol``. Returns (W, H, losses), losses[0]
    being the loss at the initialisation.
    """
    if torch.any(V < 0):
        raise LowrankAmtError("NMF input has negative entries")
    generator = torch.Generator().manual_seed(seed)
    scale = float(torch.sqrt(V.mean() / rank)) if V.numel() else 1.0
    if W is None:
        W = positive_rand((V.shape[0], rank), scale, generator, V)
    if H is None:
        H = positive_rand((rank, V.shape[1]), scale, generator, V)
    from . import nmf as numerics  # this module's functions are the family's numerics
    from .training import fit_full_batch
    W, activations, losses = fit_full_batch(numerics, V, W, beta=beta, n_iter=n_iter, tol=tol, l1=l1,
                                            update_dictionary=update_dictionary, activations={"H": H})
    return W, activations["H"], losses


def isolated_key_frames(tracks, every_key: bool = True) -> list[np.ndarray]:
    """For each of the 88 keys, the frames (F x n) where that key sounds alone, over all
    isolated-note tracks; ``tracks`` yields (features F x T, roll 88 x T). A key without
    any is an error, or with ``every_key`` false, F x 0 frames (an instrument's range)."""
    frames: list[list[np.ndarray]] = [[] for _ in range(N_KEYS)]
    n_bins = None
    for features, roll in tracks:
        n_bins = features.shape[0]
        alone = roll.sum(axis=0) == 1
        for key in range(N_KEYS):
            mask = alone & roll[key].astype(bool)
            if mask.any():
                frames[key].append(np.asarray(features[:, mask], dtype=np.float32))
    if n_bins is None:
        raise LowrankAmtError("no isolated-note tracks to learn templates from")
    missing = [key for key in range(N_KEYS) if not frames[key]]
    if missing and every_key:
        raise LowrankAmtError(f"isolated notes lack {len(missing)} piano key(s), e.g. MIDI {missing[0] + MIDI_MIN}")
    return [np.concatenate(f, axis=1) if f else np.zeros((n_bins, 0), dtype=np.float32) for f in frames]


def learn_supervised_templates(tracks, fit_key, seed: int, device: torch.device,
                               log=print, every_key: bool = True) -> tuple[np.ndarray, list[list[float]]]:
    """Templates of each piano key from isolated-note tracks.

    ``tracks`` yields (features F x T, roll 88 x T). For each key, the frames where the
    key sounds alone are gathered over all tracks and fitted by ``fit_key(V, seed) ->
    (templates, losses)`` (a family's low-rank fit, templates on a last axis of P);
    each template is normalised to unit L1 norm. Returns W (its last axis 88 x P,
    key-major) and each key's loss curve. With ``every_key`` false, a key without
    isolated frames gets all-zero templates (which ``normalized_templates`` drops).
    """
    templates, curves = [], []
    for key, frames in enumerate(isolated_key_frames(tracks, every_key)):
        if frames.shape[1] == 0:
            templates.append(None)
            curves.append([])
            continue
        w, losses = fit_key(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(device), seed + key)
        templates.append((w / w.reshape(-1, w.shape[-1]).sum(dim=0)).cpu().numpy())
        curves.append(losses)
        if (key + 1) % 22 == 0:
            log(f"templates: {key + 1}/{N_KEYS} keys learned")
    shape = next(t.shape for t in templates if t is not None)
    templates = [np.zeros(shape, dtype=np.float32) if t is None else t for t in templates]
    return np.concatenate(templates, axis=-1).astype(np.float32), curves


# --- family interface (see training.py) ---------------------------------------------

def init_dictionary(n_bins: int, rank: int, scale: float, gen: torch.Generator,
                    like: torch.Tensor, **_) -> torch.Tensor:
    """Random W (F x K) with entries of the size sqrt(mean(V) / K) (scikit-learn's init)."""
    return positive_rand((n_bins, rank), scale, gen, like)


def init_activations(V, W, gen=None, mask=None, start_floor: float = 1e-3, mean=None, **_) -> dict:
    """Where H is free, the least-squares start H = (W^T W + ridge I)^-1 W^T V, floored
    at ``start_floor`` times the constant activation that reproduces V's mean (MU needs
    every entry positive, and lifts one from near zero only slowly): one matmul, and a
    start that one KL-MU step takes closer to the optimum than ten steps from a
    constant start (tests/test_core.py). The ridge (1e-3 of the Gram matrix's mean
    diagonal) keeps near-collinear templates (octaves, neighbouring keys) from giving
    huge opposite-signed coefficients.
    With ``mask`` (activations confined to a piano roll), the constant start times the
    mask: a least-squares fit that ignores the mask is no guide to one that obeys it.
    ``mean``: the mean of V that the floor assumes (default V's own)."""
    level = (V.mean() if mean is None else mean) / W.sum(dim=1).mean().clamp_min(EPS)
    if mask is not None:
        return {"H": torch.full((W.shape[1], V.shape[-1]), float(level), dtype=V.dtype, device=V.device) * mask}
    gram = W.T @ W
    ridge = 1e-3 * gram.diagonal().mean().clamp_min(EPS)
    projector = torch.linalg.solve(gram + ridge * torch.eye(W.shape[1], dtype=W.dtype, device=W.device), W.T)
    return {"H": (projector @ V).clamp_min_(float(start_floor * level.detach()) + EPS)}


def reconstruct(W, activations) -> torch.Tensor:
    return W @ activations["H"]


def loss(V, W, activations, beta: float):
    """(beta-divergence of V from W H, W H floored at EPS)."""
    V_hat = reconstruct(W, activations).clamp_min_(EPS)
    return beta_divergence(V, V_hat, beta), V_hat


def activation_step(V, W, activations, beta: float, l1: float = 0.0, mask=None, V_hat=None) -> dict:
    """One MU step on H. ``V_hat``: the current reconstruction floored at EPS, when the
    caller already has it."""
    return {"H": update_H(V, W, activations["H"], beta, l1, mask=mask, V_hat=V_hat)}


def activation_terms(V, W, activations, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(numerator, denominator) of the MU step on H, out of place (so that autograd can
    go through it: the unrolled layers of ``unrolled.py``); V may be a batch (B x F x N)."""
    V_hat = reconstruct(W, activations).clamp_min(EPS)
    num_term, den_term = ratio_terms(V, V_hat, beta)
    denominator = W.sum(dim=0)[:, None].expand_as(activations["H"]) if den_term is None else W.T @ den_term
    return W.T @ num_term, denominator


def dictionary_terms(V, W, activations, beta: float, V_hat=None, mask=None):
    """(numerator, denominator) of the MU step on W (``V_hat`` as in activation_step;
    ``mask`` unused: masked activations are zero already)."""
    H = activations["H"]
    V_hat = (W @ H).clamp_min_(EPS) if V_hat is None else V_hat
    num_term, den_term = ratio_terms(V, V_hat, beta)
    denominator = H.sum(dim=1)[None, :].expand_as(W) if den_term is None else den_term @ H.T
    return num_term @ H.T, denominator


def key_activations(activations) -> torch.Tensor:
    """Template activations over frames (K x N)."""
    return activations["H"]


def spectral_templates(W: np.ndarray) -> np.ndarray:
    """W as bins x templates, for pitch estimation."""
    return W
