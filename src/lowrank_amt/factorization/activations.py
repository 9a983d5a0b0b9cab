"""Transcribing one track with a trained dictionary: activations by MU with the
templates fixed, then template activations summed onto the 88 piano keys."""

from __future__ import annotations

import numpy as np
import torch

from ..constants import MIDI_MAX, MIDI_MIN, N_KEYS
from .training import solve_activations


def template_keys(pitches) -> np.ndarray:
    """Key index (0..87) of each template from its MIDI pitch (rounded), -1 where the
    pitch is NaN or off the keyboard."""
    pitches = np.asarray(pitches, dtype=float)
    keys = np.full(pitches.shape, -1, dtype=np.int64)
    valid = np.isfinite(pitches)
    midi = np.rint(pitches[valid]).astype(np.int64)
    keys[valid] = np.where((midi >= MIDI_MIN) & (midi <= MIDI_MAX), midi - MIDI_MIN, -1)
    return keys


def to_keys(activations: torch.Tensor, keys: np.ndarray) -> np.ndarray:
    """K x N template activations -> 88 x N key activations (sum over the templates of
    each key; templates without a key are dropped)."""
    keys_t = torch.as_tensor(keys, device=activations.device)
    out = torch.zeros((N_KEYS, activations.shape[1]), dtype=activations.dtype, device=activations.device)
    used = keys_t >= 0
    out.index_add_(0, keys_t[used], activations[used])
    return out.cpu().numpy()


def template_activations(family, features: np.ndarray, W: np.ndarray, spec: dict, device: torch.device) -> dict:
    """The activations of a track's features with the dictionary W fixed, as the
    family's numerics hold them."""
    V = torch.from_numpy(np.array(features, dtype=np.float32)).to(device)  # copy out of the memmap
    with torch.no_grad():  # the MU steps of full-batch training with W fixed, without its loss curve
        activations = solve_activations(family.numerics, family.as_data(V, spec), torch.from_numpy(W).to(device),
                                        beta=spec["beta"], n_iter=spec["transcribe_iterations"],
                                        l1=spec["sparsity"], seed=spec["seed"], options=family.transcribe_options(spec))
    return activations


def track_activations(family, features: np.ndarray, W: np.ndarray, keys: np.ndarray, spec: dict,
                      device: torch.device, attack: np.ndarray | None = None, classes: np.ndarray | None = None) -> dict:
    """Outputs of one track (features: bins x frames) with a low-rank ``family``'s
    dictionary W (its templates' keys: ``keys``) fixed: ``note``, the 88 x frames key
    activations, and, where ``attack`` marks attack templates, ``onset``: theirs alone;
    where ``classes`` gives each template's instrument class, ``by_class`` (classes x 88
    x frames, each class's key activations) and ``classes`` (their indices)."""
    n_frames = features.shape[1]
    activations = template_activations(family, features, W, spec, device)
    H = family.numerics.key_activations(activations)[:, :n_frames]
    outputs = {"note": to_keys(H, keys)}
    if attack is not None and np.any(attack):
        outputs["onset"] = to_keys(H, np.where(np.asarray(attack, dtype=bool), keys, -1))
    if classes is not None:
        outputs.update(class_outputs(H, keys, classes))
    return outputs


def class_outputs(H: torch.Tensor, keys: np.ndarray, classes: np.ndarray) -> dict:
    """``by_class`` (classes x 88 x frames: each class's templates summed per key) and
    ``classes`` (their indices) of template activations H (K x frames)."""
    present = np.unique(classes)
    return {"by_class": np.stack([to_keys(H, np.where(np.asarray(classes) == c, keys, -1)) for c in present]),
            "classes": present}
