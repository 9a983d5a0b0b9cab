"""The trainable network (``deep/network.py``'s HarmonicNet) as a model family.

Training is epoch-based over segments of the train split (``loader.FrameBatches`` with
``segment_frames``), with Adam, through the shared epoch loop (``epochs.fit_epochs``):
the validation loss over whole validation tracks after every epoch, early stopping on
it, the weights of the best validation epoch kept, a checkpoint every epoch and exact
resume. Its output is the note posteriorgram (sigmoid of the note head, 88 x frames at
the feature frame rate), which the shared decoder reads like any model's activations.

A model's arrays: the weights, each as ``weights/<parameter name>``, and ``config`` (the
architecture, JSON).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from ..epochs import fingerprint, fit_epochs
from ..deep.network import HarmonicNet, n_parameters, track_logits, transcription_loss
from ..errors import LowrankAmtError
from ..features import cache_params, load_track, read_index
from ..loader import FrameBatches
from .base import Family, Trained

WEIGHTS = "weights/"


def build_model(params: dict, spec: dict) -> HarmonicNet:
    """The network for a CQT feature set (its params.json) and a model spec."""
    if params.get("kind", "cqt") != "cqt":
        raise LowrankAmtError(f"the network needs a CQT feature set; this one is of kind {params['kind']!r}")
    n_bins = params["n_semitones"] * params["bins_per_semitone"]
    return HarmonicNet(n_bins, params["bins_per_semitone"], params["fmin_midi"], spec["channels"])


def validation_loss(model: HarmonicNet, index: pd.DataFrame, device) -> float:
    """Loss over whole validation tracks, weighted by their frames (eval mode)."""
    model.eval()
    total, frames = 0.0, 0
    for row in index.itertuples():
        features, roll = load_track(row)
        note, onset = track_logits(model, features, device)
        target = torch.as_tensor(np.array(roll)).unsqueeze(0)
        total += float(transcription_loss(note.unsqueeze(0), onset.unsqueeze(0), target, False)) * roll.shape[1]
        frames += roll.shape[1]
    return total / frames


def segment_loss(model, features: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """The training loss of a batch of segments: ``transcription_loss`` of the model's
    (note, onset) logits, frame 0 of each segment left out of the onset term."""
    note, onset = model(features)
    return transcription_loss(note, onset, roll, True)


class NetworkLearner:
    """A torch model that maps features to (note, onset) logits, its optimizer and its
    data: the learner of ``epochs.fit_epochs``. ``loss(model, features, roll)``: the
    training loss of a batch (``segment_loss`` unless given); the validation loss is
    always ``validation_loss``."""

    def __init__(self, model, optimizer, batches, validation: pd.DataFrame, device, loss=segment_loss):
        self.model, self.optimizer, self.batches = model, optimizer, batches
        self.validation, self.device, self.loss = validation, device, loss

    @property
    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        loss_sum, n_segments = 0.0, 0
        # batches of epoch + 1: the numbering this network was trained with before the
        # shared loop, kept so that its results stay the same
        for features, roll in self.batches.epoch(epoch + 1):
            loss = self.loss(self.model, torch.as_tensor(features, dtype=torch.float32, device=self.device),
                             torch.as_tensor(roll, device=self.device))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_sum, n_segments = loss_sum + loss.item() * len(features), n_segments + len(features)
        return loss_sum / max(1, n_segments)

    def end_epoch(self) -> None:
        pass

    def validate(self, epoch: int) -> dict:
        return {"loss": validation_loss(self.model, self.validation, self.device)}

    def snapshot(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class Network(Family):
    name = "network"
    description = "the trainable harmonic-CQT CNN (HarmonicNet)"
    schema_definition = "model_network"
    defaults = {"epochs": 30, "patience": 5, "batch_segments": 8, "segment_frames": 128,
                "learning_rate": 1e-3, "channels": 16, "seed": 0, "device": "auto",
                "teacher": None}
    choices = {"device": ("auto", "cpu", "cuda")}

    def skip(self, spec):
        for key in ("epochs", "patience", "batch_segments", "segment_frames", "channels"):
            if spec[key] < 1:
                return True, f"model key '{key}' must be at least 1, got {spec[key]}"
        if not spec["learning_rate"] > 0:
            return True, f"model key 'learning_rate' must be positive, got {spec['learning_rate']}"
        return False, ""

    def fit(self, spec, run, log=print):
        validation = read_index(run.index_path, "validation")
        if validation.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'validation' tracks for early stopping")
        params = cache_params(run.index_path)
        batches = FrameBatches(run.index_path, "train", spec["batch_segments"] * spec["segment_frames"],
                               spec["seed"], segment_frames=spec["segment_frames"], shuffle=True,
                               train_hours=run.train_hours)
        torch.manual_seed(spec["seed"])
        model = build_model(params, spec).to(run.device)
        learner = NetworkLearner(model, torch.optim.Adam(model.parameters(), lr=spec["learning_rate"]), batches,
                                 validation, run.device)
        log(f"network: {n_parameters(model)} parameters, {batches.n_frames} training frames, on {run.device}")
        state = fit_epochs(learner, epochs=spec["epochs"], patience=spec["patience"],
                           checkpoint_path=run.checkpoint_path, device=run.device, log=log,
                           fingerprint=fingerprint(spec, run.train_hours, batches.n_frames))
        log(f"best validation loss {state['best_loss']:.4f} at epoch {state['best_epoch']}")
        arrays = {WEIGHTS + k: v.numpy() for k, v in state["best"].items()}
        info = {"train_seconds": state["seconds"], "train_cpu_seconds": state["cpu_seconds"],
                "n_parameters": n_parameters(model), "epochs": state["epoch"], "best_epoch": state["best_epoch"],
                "best_validation_loss": state["best_loss"], "stopped_early": state["stopped_early"],
                "n_training_frames": batches.n_frames, "architecture": "HarmonicNet",
                **{f"model_{k}": v for k, v in model.config.items()}}
        return Trained({**arrays, "config": json.dumps(model.config)}, pd.DataFrame(state["history"]), info)

    def load_network(self, arrays, device) -> HarmonicNet:
        """The trained network of a model's arrays, in eval mode on ``device``."""
        config = json.loads(str(arrays["config"]))
        model = HarmonicNet(config["n_bins"], config["bins_per_semitone"], config["fmin_midi"],
                            config["channels"], config["harmonics"])
        model.load_state_dict({k[len(WEIGHTS):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                               if k.startswith(WEIGHTS)})
        return model.to(device).eval()

    def transcriber(self, arrays, spec, device):
        model = self.load_network(arrays, device)
        return lambda features: {"note": torch.sigmoid(track_logits(model, features, device)[0]).numpy()}
