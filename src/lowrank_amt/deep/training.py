"""Train the network of ``network.py`` on the feature cache, and compute its note
posteriorgrams: stages from files to files, like ``stages.train`` and
``stages.activations``.

Training is epoch-based over segments of the train split (``loader.FrameBatches`` with
``segment_frames``), with Adam, the validation loss after every epoch and early
stopping on it (``patience`` epochs without improvement); the weights of the best
validation epoch are kept. After every epoch the whole state (weights, optimizer,
history, best weights, elapsed time) goes to a checkpoint; a rerun with the same spec
and data resumes from it and ends with the same weights as an uninterrupted run, since
the batches depend only on (seed, epoch). The checkpoint is removed once the outputs
are written, so a later rerun (e.g. after a code change) starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import LowrankAmtError
from ..factorization.core import pick_device
from ..features import load_track, read_index
from ..io import atomic_path, read_json, write_json
from ..loader import FrameBatches
from ..stages import write_activations
from .network import HarmonicNet, n_parameters, track_logits, transcription_loss

#: Model spec keys and defaults (the config schema holds the same defaults).
DEFAULTS = {"epochs": 30, "patience": 5, "batch_segments": 8, "segment_frames": 128,
            "learning_rate": 1e-3, "channels": 16, "seed": 0, "device": "auto"}


def _spec(spec: dict) -> dict:
    spec = {**DEFAULTS, **spec}
    for key in ("epochs", "patience", "batch_segments", "segment_frames", "channels"):
        if int(spec[key]) < 1:
            raise LowrankAmtError(f"model key '{key}' must be at least 1, got {spec[key]}")
    if not spec["learning_rate"] > 0:
        raise LowrankAmtError(f"model key 'learning_rate' must be positive, got {spec['learning_rate']}")
    return spec


def _feature_params(index_path) -> dict:
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing; extract features first")
    params = read_json(params_path)
    if params.get("kind", "cqt") != "cqt":
        raise LowrankAmtError(f"the network needs a CQT feature set; {params_path} is of kind {params['kind']!r}")
    return params


def build_model(params: dict, spec: dict) -> HarmonicNet:
    """The network for a CQT feature set (its params.json) and a model spec."""
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


def _signature(spec: dict, index_path, train_hours, n_frames: int) -> str:
    """What a checkpoint must match to be resumed: spec, data selection and size."""
    text = json.dumps({"spec": {k: v for k, v in spec.items() if k != "device"}, "index": str(Path(index_path).resolve()),
                       "train_hours": train_hours, "n_frames": n_frames}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def train(spec: dict, index_path, model_path, loss_path, info_path, checkpoint_path=None,
          train_hours: float | None = None, log=print) -> None:
    """Train the network on the train split (its first ``train_hours`` hours; None =
    all), stop early on the validation loss, and write ``model_path`` (.pt: best
    weights and architecture), ``loss_path`` (epoch, split, loss) and ``info_path``
    (train_seconds, train_cpu_seconds, device, n_parameters, epochs, best_epoch, ...).
    ``checkpoint_path`` (default: beside the model, ``checkpoint.pt``) is written after
    every epoch and resumed from when present."""
    spec = _spec(spec)
    device = pick_device(spec["device"])
    params = _feature_params(index_path)
    validation = read_index(index_path, "validation")
    if validation.empty:
        raise LowrankAmtError(f"{index_path} has no 'validation' tracks for early stopping")
    batches = FrameBatches(index_path, "train", spec["batch_segments"] * spec["segment_frames"], spec["seed"],
                           segment_frames=spec["segment_frames"], shuffle=True, train_hours=train_hours)
    checkpoint_path = Path(checkpoint_path or Path(model_path).parent / "checkpoint.pt")
    signature = _signature(spec, index_path, train_hours, batches.n_frames)

    torch.manual_seed(spec["seed"])
    model = build_model(params, spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["learning_rate"])
    state = {"epoch": 0, "history": [], "best_loss": float("inf"), "best_epoch": 0,
             "best_weights": None, "seconds": 0.0, "cpu_seconds": 0.0}
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if saved["signature"] == signature:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = saved["state"]
            log(f"resuming from {checkpoint_path} after epoch {state['epoch']}")
        else:
            log(f"ignoring {checkpoint_path}: it was written for another spec or data selection")
    log(f"network: {n_parameters(model)} parameters, {batches.n_frames} training frames, on {device}")

    while state["epoch"] < spec["epochs"] and state["epoch"] - state["best_epoch"] < spec["patience"]:
        epoch = state["epoch"] + 1
        wall, cpu = time.perf_counter(), time.process_time()
        model.train()
        loss_sum, n_segments = 0.0, 0
        for features, roll in batches.epoch(epoch):
            note, onset = model(torch.as_tensor(features, dtype=torch.float32, device=device))
            loss = transcription_loss(note, onset, torch.as_tensor(roll, device=device), True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, n_segments = loss_sum + loss.item() * len(features), n_segments + len(features)
        train_loss = loss_sum / max(1, n_segments)
        val_loss = validation_loss(model, validation, device)
        state["history"] += [{"epoch": epoch, "split": "train", "loss": train_loss},
                             {"epoch": epoch, "split": "validation", "loss": val_loss}]
        if val_loss < state["best_loss"]:
            state["best_loss"], state["best_epoch"] = val_loss, epoch
            state["best_weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - wall
        state["cpu_seconds"] += time.process_time() - cpu
        with atomic_path(checkpoint_path) as tmp:
            torch.save({"signature": signature, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "state": state}, tmp)
        log(f"epoch {epoch}: train loss {train_loss:.4f}, validation loss {val_loss:.4f}"
            f"{' (best)' if state['best_epoch'] == epoch else ''}")

    with atomic_path(loss_path) as tmp:
        pd.DataFrame(state["history"], columns=["epoch", "split", "loss"]).to_csv(tmp, index=False)
    write_json(info_path, {"train_seconds": state["seconds"], "train_cpu_seconds": state["cpu_seconds"],
                           "device": str(device), "n_parameters": n_parameters(model),
                           "epochs": state["epoch"], "best_epoch": state["best_epoch"],
                           "best_validation_loss": state["best_loss"],
                           "stopped_early": state["epoch"] < spec["epochs"],
                           "n_training_frames": batches.n_frames, "train_hours": train_hours,
                           "architecture": "HarmonicNet", **{f"model_{k}": v for k, v in model.config.items()}})
    with atomic_path(model_path) as tmp:
        torch.save({"weights": state["best_weights"], "config": model.config, "spec": spec}, tmp)
    checkpoint_path.unlink(missing_ok=True)
    log(f"trained {state['epoch']} epochs in {state['seconds']:.1f} s; best validation loss "
        f"{state['best_loss']:.4f} at epoch {state['best_epoch']}")


def load_model(model_path, device) -> HarmonicNet:
    """The trained network of a ``train`` output, in eval mode on ``device``."""
    try:
        saved = torch.load(model_path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise LowrankAmtError(f"model {model_path} does not exist; train the network first") from None
    except Exception as exc:  # torch raises many kinds on a corrupt or foreign file
        raise LowrankAmtError(f"model {model_path} cannot be read ({exc}); delete it and train again") from exc
    config = saved["config"]
    model = HarmonicNet(config["n_bins"], config["bins_per_semitone"], config["fmin_midi"],
                        config["channels"], config["harmonics"])
    model.load_state_dict(saved["weights"])
    return model.to(device).eval()


def activations(spec: dict, model_path, index_path, activations_path, info_path, log=print) -> None:
    """Note posteriorgrams (88 x frames, sigmoid of the note head, at the feature frame
    rate) of every validation and test track, saved as float16 arrays named
    ``<split>__<track_id>`` like every model's activations; ``info_path`` gets
    seconds_per_audio_minute and device."""
    spec = _spec(spec)
    device = pick_device(spec["device"])
    model = load_model(model_path, device)
    write_activations(index_path, activations_path, info_path, device, log,
                      lambda features: torch.sigmoid(track_logits(model, features, device)[0]).numpy())
