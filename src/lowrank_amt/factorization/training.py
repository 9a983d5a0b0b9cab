"""Training of every low-rank family: the full-batch MU loop, and the mini-batch
learner (online MU, or a gradient optimizer on the dictionary) that the shared epoch
loop (``epochs.fit_epochs``) drives.

Every function here takes the *numerics* of a factorization: an object (the modules
``nmf``, ``nmfd`` and ``ntd``; a family's ``numerics``) with ``init_dictionary``,
``init_activations``, ``reconstruct``, ``loss`` (beta-divergence and the floored
reconstruction, when it formed one), ``activation_step`` (one MU step on every
activation factor, W fixed), ``dictionary_terms`` (numerator and denominator of the MU
step on W), ``key_activations`` and ``spectral_templates``. The dictionary is one tensor W; the activations are a
dict of tensors describing the data at hand (H for NMF and NMFD; G, Q, P for NTD). A
*mask* (same shape as H, 0/1; a family's ``mask_of`` makes it from the loader's targets)
confines activations to a piano roll: MU keeps zeros at zero. NTD, whose activations are
a Tucker product, takes it as a penalty instead (``ntd.py``), in its dictionary step too.

Mini-batch forms, per batch: activations are solved from the family's start (NMF: a
least-squares fit; nothing is kept between batches, so memory does not grow with the
data) by ``inner_iterations`` MU steps with W fixed, then W moves by
- ``online_mu``: running sufficient statistics with a forget factor (Lefevre, Bach &
  Fevotte 2011; scikit-learn's MiniBatchNMF): A <- rho A + W * numerator,
  B <- rho B + denominator, W <- (A / B) ** gamma(beta), rho = forget ** (batch / frames);
- ``gradient``: one step of Adam or SGD with momentum on theta = log W (a positive
  parameterization: steps are relative, so one learning rate fits any data scale),
  the gradient of the batch's beta-divergence per frame by autograd.
Each epoch (``epochs.fit_epochs``): shuffled batches from the loader (seed, epoch), the
learning rate times ``lr_decay``, the validation loss, optionally a validation score of
the dictionary, early stopping, checkpoints and exact resume.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import LowrankAmtError
from .core import EPS, beta_divergence, generator, mu_exponent, mu_step


def n_frames(V: torch.Tensor) -> int:
    """Frames in a batch: F x N, or segments B x F x T (bins are always axis -2)."""
    return V.numel() // V.shape[-2]


def solve_activations(numerics, V, W, *, beta, n_iter, l1=0.0, mask=None, seed=0, options=None):
    """Activations of V with W fixed: ``n_iter`` MU steps from the family's start."""
    activations = numerics.init_activations(V, W, generator(seed), mask, **(options or {}))
    for _ in range(n_iter):
        activations = numerics.activation_step(V, W, activations, beta, l1, mask)
    return activations


def fit_full_batch(numerics, V, W, *, beta: float, n_iter: int, tol: float = 0.0, l1: float = 0.0,
                   mask=None, update_dictionary: bool = True, seed: int = 0, options=None,
                   activations=None, log=None):
    """MU on all of V at once: each iteration one step on the activations, then one on W.
    The one full-batch loop of every low-rank family.

    ``activations`` gives the start (else the family's ``init_activations``). Stops after
    ``n_iter`` iterations or when the relative loss decrease falls under ``tol``. Returns
    (W, activations, losses), losses[i] being the beta-divergence after i iterations
    (losses[0]: the start), as the family's ``loss`` computes it.
    """
    if activations is None:
        activations = numerics.init_activations(V, W, generator(seed), mask, **(options or {}))
    losses = []
    for iteration in range(n_iter + 1):
        loss, V_hat = numerics.loss(V, W, activations, beta)
        losses.append(float(loss))
        if log and iteration % 50 == 0:
            log(f"iteration {iteration}: loss {losses[-1]:.6g}")
        if iteration == n_iter or (tol and iteration and losses[-2] - losses[-1] <= tol * abs(losses[-2])):
            break
        # a reconstruction the loss formed serves the first activation update
        activations = numerics.activation_step(V, W, activations, beta, l1, mask, V_hat=V_hat)
        if update_dictionary:
            W = mu_step(W, *numerics.dictionary_terms(V, W, activations, beta, mask=mask), beta)
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

    def step(self, numerics, V, activations, V_hat=None, mask=None) -> None:
        """One update from a batch; ``V_hat``: its reconstruction floored at EPS, if known."""
        numerator, denominator = numerics.dictionary_terms(V, self.W, activations, self.beta, V_hat=V_hat, mask=mask)
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

    def step(self, numerics, V, activations, V_hat=None, mask=None) -> None:
        """One optimizer step on a batch (autograd recomputes the reconstruction: V_hat
        unused; the mask has acted on the activations already)."""
        self.optimizer.zero_grad()
        activations = {name: value.detach() for name, value in activations.items()}
        loss = beta_divergence(V, numerics.reconstruct(self.theta.exp(), activations), self.beta) / n_frames(V)
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


def batch_tensors(features, targets, device, mask_of=None):
    """Loader batch (numpy) -> (V float32 tensor, mask or None) on ``device``;
    ``mask_of`` maps the batch's targets to the activations' mask (None: no mask)."""
    V = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    if mask_of is None:
        return V, None
    return V, torch.from_numpy(np.ascontiguousarray(mask_of(targets), dtype=np.float32)).to(device)


def mean_loss(numerics, batches, W, *, beta, n_iter, l1, device, seed, options, mask_of=None, epoch=0):
    """Beta-divergence per frame over all batches of one pass, activations solved with W
    fixed by ``n_iter`` MU steps."""
    total, frames = 0.0, 0
    with torch.no_grad():
        for features, targets in batches.epoch(epoch):
            V, mask = batch_tensors(features, targets, device, mask_of)
            activations = solve_activations(numerics, V, W, beta=beta, n_iter=n_iter, l1=l1,
                                            mask=mask, seed=seed, options=options)
            total += float(beta_divergence(V, numerics.reconstruct(W, activations), beta))
            frames += n_frames(V)
    return total / max(frames, 1)


class DictionaryLearner:
    """A low-rank family's dictionary trained over mini-batches: the learner that
    ``epochs.fit_epochs`` drives (see the module docstring for one batch's work).

    ``validation_score`` (a function of W, e.g. the validation note F of the model that
    would be saved from it) is logged every ``score_every`` epochs as
    ``validation_note_f``; early stopping still watches the validation loss.
    """

    def __init__(self, numerics, updater, train_batches, *, beta: float, inner_iterations: int,
                 l1: float = 0.0, mask_of=None, seed: int = 0, device="cpu", options=None,
                 validation_batches=None, validation_score=None, score_every: int = 1):
        if validation_score is not None and validation_batches is None:
            raise ValueError("DictionaryLearner: validation_score needs validation_batches")
        if score_every < 1:
            raise ValueError(f"DictionaryLearner: score_every must be at least 1, got {score_every}")
        self.numerics, self.updater, self.train_batches = numerics, updater, train_batches
        self.solve = dict(beta=beta, n_iter=inner_iterations, l1=l1, options=options)
        self.mask_of, self.seed, self.device = mask_of, seed, device
        self.validation_batches, self.validation_score, self.score_every = (validation_batches, validation_score,
                                                                            score_every)

    @property
    def learning_rate(self):
        return self.updater.learning_rate

    def train_epoch(self, epoch: int) -> float:
        total, frames, beta = 0.0, 0, self.solve["beta"]
        for number, (features, targets) in enumerate(self.train_batches.epoch(epoch)):
            V, mask = batch_tensors(features, targets, self.device, self.mask_of)
            with torch.no_grad():
                activations = solve_activations(self.numerics, V, self.updater.W, mask=mask,
                                                seed=self.seed + 7919 * epoch + number, **self.solve)
                # one reconstruction serves the batch's loss and the dictionary update
                V_hat = self.numerics.reconstruct(self.updater.W, activations).clamp_min_(EPS)
                total += float(beta_divergence(V, V_hat, beta))
            frames += n_frames(V)
            self.updater.step(self.numerics, V, activations, V_hat=V_hat, mask=mask)
        return total / max(frames, 1)

    def end_epoch(self) -> None:
        self.updater.end_epoch()

    def validate(self, epoch: int) -> dict | None:
        if self.validation_batches is None:
            return None
        row = {"loss": mean_loss(self.numerics, self.validation_batches, self.updater.W, mask_of=self.mask_of,
                                 device=self.device, seed=self.seed, **self.solve)}
        if self.validation_score is not None and (epoch + 1) % self.score_every == 0:
            row["validation_note_f"] = float(self.validation_score(self.updater.W))
        return row

    def snapshot(self) -> torch.Tensor:
        return self.updater.W.clone()

    def state_dict(self) -> dict:
        return self.updater.state_dict()

    def load_state_dict(self, state) -> None:
        self.updater.load_state_dict(state)
