"""The learner that trains every network-style model (the ``network`` family's networks
and the ``unrolled`` family's layers): a torch model mapping features to (note, onset)
logits, its optimizer and its data, as the shared epoch loop (``epochs.fit_epochs``)
drives it. A model's weights are saved as arrays named ``weights/<parameter name>``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..signal.feature_cache import load_cached, load_track
from .harmonic_net import offset_loss, track_logits, transcription_loss

#: Prefix of a network's weights among a model's arrays.
WEIGHTS = "weights/"


def validation_loss(model: torch.nn.Module, index: pd.DataFrame, device, target: str = "roll") -> float:
    """Loss over whole validation tracks, weighted by their frames (eval mode), against
    the index's ``target`` (``roll``, or ``class_roll`` for outputs per class)."""
    model.eval()
    total, frames = 0.0, 0
    for row in index.itertuples():
        features, roll = load_track(row)
        if target != "roll":
            roll = load_cached(getattr(row, f"{target}_path"))
        note, onset = track_logits(model, features, device)
        truth = torch.as_tensor(np.array(roll)).unsqueeze(0)
        total += float(transcription_loss(note.unsqueeze(0), onset.unsqueeze(0), truth, False)) * roll.shape[1]
        frames += roll.shape[1]
    return total / frames


def segment_loss(model, features: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """The training loss of a batch of segments: ``transcription_loss`` of the model's
    (note, onset) logits, frame 0 of each segment left out of the onset term, plus the
    offset head's loss where the model has one."""
    outputs = model(features)
    loss = transcription_loss(outputs[0], outputs[1], roll, True)
    return loss + offset_loss(outputs[2], roll, True) if len(outputs) > 2 else loss


def finite(loss: torch.Tensor, model: torch.nn.Module) -> bool:
    """Whether a batch's loss and every gradient of ``model`` are finite."""
    return bool(torch.isfinite(loss)) and all(bool(torch.isfinite(p.grad).all()) for p in model.parameters()
                                              if p.grad is not None)


class NetworkLearner:
    """A torch model that maps features to (note, onset) logits, its optimizer and its
    data: the learner of ``epochs.fit_epochs``. ``loss(model, features, roll)``: the
    training loss of a batch (``segment_loss`` unless given); the validation loss is
    always ``validation_loss``; ``score(model)``, when given, the validation note F logged
    beside it; the learning rate is multiplied by ``lr_decay`` after every epoch. A batch
    whose loss or gradient is not finite (an overflow) moves nothing; the epoch's count of
    such batches is logged as ``skipped_steps``; ``steps``, logged after every epoch, counts
    the optimizer steps taken so far (the training budget the validation curves are read
    against)."""

    def __init__(self, model, optimizer, batches, validation: pd.DataFrame, device, loss=segment_loss,
                 score=None, lr_decay: float = 1.0, target: str = "roll"):
        self.model, self.optimizer, self.batches = model, optimizer, batches
        self.validation, self.device, self.loss, self.score = validation, device, loss, score
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay)
        self.skipped_steps, self.steps = 0, 0
        self.target = target  # the validation loss's targets

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        loss_sum, n_segments, frames, start = 0.0, 0, 0, time.perf_counter()
        self.skipped_steps = 0
        # mixed precision on CUDA (bfloat16 needs no loss scaling); float32 on the CPU
        mixed = torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(self.device).type == "cuda")
        # batches of epoch + 1: the numbering this network was trained with before the
        # shared loop, kept so that its results stay the same
        for features, roll in self.batches.epoch(epoch + 1):
            with mixed:
                loss = self.loss(self.model, torch.as_tensor(features, dtype=torch.float32, device=self.device),
                                 torch.as_tensor(roll, device=self.device))
            self.optimizer.zero_grad()
            loss.backward()
            frames += features.shape[0] * features.shape[-1]
            if not finite(loss, self.model):  # an overflow: skip the step rather than spread NaN into the weights
                self.skipped_steps += 1
                continue
            self.optimizer.step()
            self.steps += 1
            loss_sum, n_segments = loss_sum + loss.item() * len(features), n_segments + len(features)
        self.frames_per_second = frames / (time.perf_counter() - start)
        return loss_sum / max(1, n_segments)

    def end_epoch(self) -> None:
        self.schedule.step()

    def validate(self, epoch: int) -> dict:
        """The validation loss, the validation note F (with ``score``) and the training
        speed of the epoch (frames per second)."""
        scores = {"loss": validation_loss(self.model, self.validation, self.device, self.target)}
        if self.score is not None:
            scores["validation_note_f"] = self.score(self.model)
        skipped = {"skipped_steps": self.skipped_steps} if self.skipped_steps else {}
        return {**scores, "steps": self.steps, "frames_per_second": self.frames_per_second, **skipped}

    def snapshot(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(), "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.steps = state.get("steps", 0)  # (0: a checkpoint from before steps were counted)
