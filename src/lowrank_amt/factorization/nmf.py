"""NMF, V ~ W H, by beta-divergence multiplicative updates: a functional core
(``nmf``) and the two uses a transcriber needs — learning one template per piano key
from isolated notes (``learn_supervised_templates``) and estimating activations of a
track with the templates fixed (``transcribe_activations``)."""

from __future__ import annotations

import numpy as np
import torch

from ..constants import N_KEYS
from ..errors import LowrankAmtError
from .core import EPS, beta_divergence, update_H, update_W


def random_init(n_rows: int, n_cols: int, scale: float, generator: torch.Generator,
                like: torch.Tensor) -> torch.Tensor:
    """Uniform positive init with the data's scale (as scikit-learn's ``init='random'``),
    drawn on the CPU so that a seed gives the same start on every device."""
    init = torch.rand(n_rows, n_cols, generator=generator, dtype=like.dtype) * scale + EPS
    return init.to(like.device)


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
        W = random_init(V.shape[0], rank, scale, generator, V)
    if H is None:
        H = random_init(rank, V.shape[1], scale, generator, V)
    losses = [float(beta_divergence(V, W @ H, beta))]
    for _ in range(n_iter):
        H = update_H(V, W, H, beta, l1=l1)
        if update_dictionary:
            W = update_W(V, W, H, beta)
        losses.append(float(beta_divergence(V, W @ H, beta)))
        if tol and losses[-2] - losses[-1] <= tol * abs(losses[-2]):
            break
    return W, H, losses


def learn_supervised_templates(tracks, beta: float, n_iter: int, seed: int,
                               device: torch.device, log=print) -> tuple[np.ndarray, list[list[float]]]:
    """One template per piano key from isolated-note tracks.

    ``tracks`` yields (features F x T, roll 88 x T). For each key, the frames where the
    key sounds alone are gathered over all tracks and factored by rank-1 NMF; the
    template is normalised to unit L1 norm. Returns W (F x 88) and each key's loss curve.
    """
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
    if missing:
        raise LowrankAmtError(f"isolated notes lack {len(missing)} piano key(s), e.g. MIDI {missing[0] + 21}")
    W = np.zeros((n_bins, N_KEYS), dtype=np.float32)
    curves = []
    for key in range(N_KEYS):
        V = torch.from_numpy(np.concatenate(frames[key], axis=1)).to(device)
        w, _, losses = nmf(V, 1, beta, n_iter, seed=seed + key)
        w = w[:, 0] / w[:, 0].sum()
        W[:, key] = w.cpu().numpy()
        curves.append(losses)
        if (key + 1) % 22 == 0:
            log(f"templates: {key + 1}/{N_KEYS} keys learned")
    return W, curves


def transcribe_activations(features: np.ndarray, W: np.ndarray, beta: float, n_iter: int,
                           l1: float, seed: int, device: torch.device) -> np.ndarray:
    """Activations H (88 x frames) of one track with the dictionary W fixed."""
    V = torch.from_numpy(np.array(features, dtype=np.float32)).to(device)  # copy out of the memmap
    W_t = torch.from_numpy(W).to(device)
    _, H, _ = nmf(V, W.shape[1], beta, n_iter, W=W_t, update_dictionary=False, l1=l1, seed=seed)
    return H.cpu().numpy()
