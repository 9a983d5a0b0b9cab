"""Training loops shared by the three families: full-batch MU, and epoch-wise training
over streamed mini-batches (online MU, or a gradient optimizer on the dictionary).

A *family* is a module (``nmf``, ``nmfd``, ``ntd``) with the functions
``init_dictionary``, ``init_activations``, ``reconstruct``, ``activation_step``
(one MU step on every activation factor, W fixed), ``dictionary_terms`` (numerator and
denominator of the MU step on W) and ``key_activations``. The dictionary is one tensor
W; the activations are a dict of tensors describing the data at hand (H for NMF and
NMFD; G, Q, P for NTD). A *mask* (same shape as H, 0/1) confines activations to a piano
roll: MU keeps zeros at zero.

Mini-batch forms, per batch: activations are solved from the family's start (NMF: a
least-squares fit; nothing is kept between batches, so memory does not grow with the
data) by ``inner_iterations`` MU steps with W fixed, then W moves by
- ``online_mu``: running sufficient statistics with a forget factor (Lefevre, Bach &
  Fevotte 2011; scikit-learn's MiniBatchNMF): A <- rho A + W * numerator,
  B <- rho B + denominator, W <- (A / B) ** gamma(beta), rho = forget ** (batch / frames);
- ``gradient``: one step of Adam or SGD with momentum on theta = log W (a positive
  parameterization: steps are relative, so one learning rate fits any data scale),
  the gradient of the batch's beta-divergence per frame by autograd.
Each epoch: shuffled batches from the loader (seed, epoch), the learning rate times
``lr_decay``, the validation loss, optionally a validation score of the dictionary (the
caller's function of W, e.g. the note F of the validation tracks transcribed with it),
early stopping after ``patience`` epochs without improvement of the validation loss (the
best dictionary is kept), and a checkpoint (``torch.save`` of W, the optimizer or
statistics, the RNG state and the history) from which an interrupted run resumes to the
same final dictionary and history.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import LowrankAmtError
from ..io import atomic_path
from . import nmf, nmfd, ntd
from .core import EPS, beta_divergence, generator, mu_exponent, mu_step

FAMILIES = {"nmf": nmf, "nmfd": nmfd, "ntd": ntd}


def n_frames(V: torch.Tensor) -> int:
    """Frames in a batch: F x N, or segments B x F x T (bins are always axis -2)."""
    return V.numel() // V.shape[-2]


def solve_activations(family, V, W, *, beta, n_iter, l1=0.0, mask=None, seed=0, options=None):
    """Activations of V with W fixed: ``n_iter`` MU steps from the family's start."""
    activations = family.init_activations(V, W, generator(seed), mask, **(options or {}))
    for _ in range(n_iter):
        activations = family.activation_step(V, W, activations, beta, l1, mask)
    return activations


def fit_full_batch(family, V, W, *, beta: float, n_iter: int, tol: float = 0.0, l1: float = 0.0,
                   mask=None, update_dictionary: bool = True, seed: int = 0, options=None, log=None):
    """MU on all of V at once: each iteration one step on the activations, then one on W.

    Stops after ``n_iter`` iterations or when the relative loss decrease falls under
    ``tol``. Returns (W, activations, losses), losses[i] being the beta-divergence after
    i iterations (losses[0]: the start).
    """
    activations = family.init_activations(V, W, generator(seed), mask, **(options or {}))
    losses = []
    for iteration in range(n_iter + 1):
        V_hat = family.reconstruct(W, activations).clamp_min_(EPS)
        losses.append(float(beta_divergence(V, V_hat, beta)))
        if log and iteration % 50 == 0:
            log(f"iteration {iteration}: loss {losses[-1]:.6g}")
        if iteration == n_iter or (tol and iteration and losses[-2] - losses[-1] <= tol * abs(losses[-2])):
            break
        # the reconstruction just used for the loss serves the first activation update
        activations = family.activation_step(V, W, activations, beta, l1, mask, V_hat=V_hat)
        if update_dictionary:
            W = mu_step(W, *family.dictionary_terms(V, W, activations, beta), beta)
    return W, activations, losses


class OnlineMU:
    """W from running MU statistics with a forget factor (see the module docstring)."""

    def __init__(self, W, *, beta: float, forget_factor: float, total_frames: int):
        if not 0 < forget_factor <= 1:
            raise LowrankAmtError(f"model key 'forget_factor' must be in (0, 1], got {forget_factor}")
        self.beta, self.forget_factor, self.total_frames = beta, forget_factor, max(1, total_frames)
        self.W = W
        # scikit-learn's start: A = W, B = 1, so that the first batch moves W part of the way
        self.numerator, self.denominator = W.clone(), torch.ones_like(W)
        self.learning_rate = None

    def step(self, family, V, activations, V_hat=None) -> None:
        """One update from a batch; ``V_hat``: its reconstruction floored at EPS, if known."""
        numerator, denominator = family.dictionary_terms(V, self.W, activations, self.beta, V_hat=V_hat)
        rho = self.forget_factor ** (n_frames(V) / self.total_frames)
        gamma = mu_exponent(self.beta)
        self.numerator = rho * self.numerator + self.W ** (1 / gamma) * numerator
        self.denominator = rho * self.denominator + denominator
        self.W = (self.numerator / self.denominator.clamp_min(1e-30)).clamp_min(1e-10) ** gamma

    def end_epoch(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"W": self.W, "numerator": self.numerator, "denominator": self.denominator}

    def load_state_dict(self, state) -> None:
        self.W, self.numerator, self.denominator = state["W"], state["numerator"], state["denominator"]


class GradientStep:
    """W = exp(theta), theta moved by Adam or SGD with momentum (see the module docstring)."""

    def __init__(self, W, *, beta: float, optimizer: str, learning_rate: float, momentum: float,
                 lr_decay: float):
        self.beta = beta
        self.theta = torch.log(W.clamp_min(1e-10)).clone().requires_grad_(True)
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam([self.theta], lr=learning_rate)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD([self.theta], lr=learning_rate, momentum=momentum)
        else:
            raise LowrankAmtError(f"model key 'optimizer' must be 'adam' or 'sgd', got {optimizer!r}")
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=lr_decay)

    @property
    def W(self):
        return self.theta.detach().exp()

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, family, V, activations, V_hat=None) -> None:
        """One optimizer step on a batch (autograd recomputes the reconstruction: V_hat unused)."""
        self.optimizer.zero_grad()
        activations = {name: value.detach() for name, value in activations.items()}
        loss = beta_divergence(V, family.reconstruct(self.theta.exp(), activations), self.beta) / n_frames(V)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # keep exp(theta) finite and above the eps floor, whatever the step
            self.theta.clamp_(math.log(1e-10), 30.0)

    def end_epoch(self) -> None:
        self.schedule.step()

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])


def batch_tensors(features, roll, device, masked: bool):
    """Loader batch (numpy) -> (V float32 tensor, mask or None) on ``device``."""
    V = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    mask = torch.from_numpy(np.ascontiguousarray(roll, dtype=np.float32)).to(device) if masked else None
    return V, mask


def mean_loss(family, batches, W, *, beta, inner_iterations, l1, masked, device, seed, options, epoch=0):
    """Beta-divergence per frame over all batches of one pass, activations solved with W fixed."""
    total, frames = 0.0, 0
    with torch.no_grad():
        for features, roll in batches.epoch(epoch):
            V, mask = batch_tensors(features, roll, device, masked)
            activations = solve_activations(family, V, W, beta=beta, n_iter=inner_iterations, l1=l1,
                                            mask=mask, seed=seed, options=options)
            total += float(beta_divergence(V, family.reconstruct(W, activations), beta))
            frames += n_frames(V)
    return total / max(frames, 1)


def fit_epochs(family, updater, train_batches, *, beta: float, epochs: int, inner_iterations: int,
               l1: float = 0.0, masked: bool = False, validation_batches=None, patience: int = 0,
               checkpoint_path=None, fingerprint: str = "", seed: int = 0, device="cpu",
               options=None, validation_score=None, score_every: int = 1, log=print):
    """Epoch-wise training of ``updater``'s dictionary on ``train_batches`` (an object
    whose ``epoch(e)`` yields (features, roll) numpy batches, as ``loader.FrameBatches``).

    ``validation_batches`` (same kind, optional) give the loss that early stopping
    watches (else the training loss); ``patience`` 0 never stops early. With
    ``validation_score`` (a function of W returning a float; needs
    ``validation_batches``), every ``score_every``-th epoch's validation row also holds
    ``score`` (other rows lack the key); it is logged only, early stopping still
    watches the loss. With ``checkpoint_path``, a checkpoint is written after every epoch and an
    existing one with the same ``fingerprint`` (the model spec) is resumed. Returns
    (best W, history): history is a list of {epoch, split, loss, learning_rate[, score]}
    rows, losses per frame.
    """
    if validation_score is not None and validation_batches is None:
        raise ValueError("fit_epochs: validation_score needs validation_batches")
    if score_every < 1:
        raise ValueError(f"fit_epochs: score_every must be at least 1, got {score_every}")
    state = {"epoch": 0, "history": [], "best_loss": math.inf, "best_W": updater.W,
             "bad_epochs": 0, "done": False}
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if saved.get("fingerprint") != fingerprint:
            raise LowrankAmtError(f"checkpoint {checkpoint_path} belongs to another model spec; "
                                  "delete it to train from scratch")
        updater.load_state_dict(saved["updater"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        log(f"resumed from {checkpoint_path} after epoch {state['epoch']}")
    while not state["done"] and state["epoch"] < epochs:
        epoch = state["epoch"]
        learning_rate = updater.learning_rate
        total, frames = 0.0, 0
        for number, (features, roll) in enumerate(train_batches.epoch(epoch)):
            V, mask = batch_tensors(features, roll, device, masked)
            with torch.no_grad():
                activations = solve_activations(
                    family, V, updater.W, beta=beta, n_iter=inner_iterations, l1=l1, mask=mask,
                    seed=seed + 7919 * epoch + number, options=options)
                # one reconstruction serves the batch's loss and the dictionary update
                V_hat = family.reconstruct(updater.W, activations).clamp_min_(EPS)
                total += float(beta_divergence(V, V_hat, beta))
            frames += n_frames(V)
            updater.step(family, V, activations, V_hat=V_hat)
        updater.end_epoch()
        rows = [{"epoch": epoch + 1, "split": "train", "loss": total / max(frames, 1),
                 "learning_rate": learning_rate}]
        watched = rows[0]["loss"]
        if validation_batches is not None:
            watched = mean_loss(family, validation_batches, updater.W, beta=beta,
                                inner_iterations=inner_iterations, l1=l1, masked=masked,
                                device=device, seed=seed, options=options)
            rows.append({"epoch": epoch + 1, "split": "validation", "loss": watched,
                         "learning_rate": learning_rate})
        if validation_score is not None and (epoch + 1) % score_every == 0:
            rows[1]["score"] = float(validation_score(updater.W))
        state["history"].extend(rows)
        if watched < state["best_loss"]:
            state.update(best_loss=watched, best_W=updater.W.clone(), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["done"] = bool(patience) and state["bad_epochs"] >= patience
        log(f"epoch {epoch + 1}: " + ", ".join(f"{r['split']} loss {r['loss']:.6g}" for r in rows)
            + (f", validation score {rows[-1]['score']:.4g}" if "score" in rows[-1] else "")
            + (" (early stop)" if state["done"] else ""))
        if checkpoint_path is not None:
            with atomic_path(checkpoint_path) as tmp:
                torch.save({"fingerprint": fingerprint, "updater": updater.state_dict(),
                            "rng": torch.get_rng_state(), "state": state}, tmp)
    return state["best_W"], state["history"]


def checkpoint_file(checkpoint_dir) -> Path | None:
    return None if checkpoint_dir is None else Path(os.fspath(checkpoint_dir)) / "last.pt"
