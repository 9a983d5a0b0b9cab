"""The trainable networks as a model family: ``architecture`` harmonic_net (``deep/harmonic_net.py``,
the parameter-matched baseline), onsets_frames or harmonic_attention (``deep/onsets_frames.py``).

Training is epoch-based over segments of the train split (``loader.FrameBatches`` with
``segment_frames``; ``steps_per_epoch`` makes an epoch that many batches of random
segments, so that a size's cost does not grow with the data), with Adam, through the
shared epoch loop (``epochs.fit_epochs``):
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

from ..constants import N_KEYS
from ..deep.harmonic_net import DEFAULT_HARMONICS, HarmonicNet, n_parameters, track_logits
from ..deep.learner import WEIGHTS, NetworkLearner
from ..deep.onsets_frames import OnsetsAndFrames
from ..errors import LowrankAmtError
from ..instruments import CLASSES, index_classes
from ..learning.augment import augmentation
from ..learning.epoch_scoring import note_f_scorer
from ..learning.epochs import fingerprint, fit_epochs
from ..learning.loader import FrameBatches
from ..param import Param
from ..signal.feature_cache import cache_params, read_index
from .base import Family, Trained
from .schema import AUGMENT, DEVICE, STEPS_PER_EPOCH, TEACHER


def build_model(params: dict, spec: dict, n_classes: int = 1) -> torch.nn.Module:
    """The network of a model spec (its ``architecture``) for a CQT feature set (its
    params.json), with ``n_classes`` sets of outputs."""
    if params.get("kind", "cqt") != "cqt":
        raise LowrankAmtError(f"the network needs a CQT feature set; this one is of kind {params['kind']!r}")
    n_bins = params["n_semitones"] * params["bins_per_semitone"]
    return network_of({"architecture": spec["architecture"], "n_bins": n_bins, "channels": spec["channels"],
                       "bins_per_semitone": params["bins_per_semitone"], "fmin_midi": params["fmin_midi"],
                       "hidden": spec["hidden"], **({"n_classes": n_classes} if n_classes > 1 else {})})


def network_of(config: dict) -> torch.nn.Module:
    """The (untrained) network that a saved ``config`` describes."""
    architecture = config.get("architecture", "harmonic_net")
    if architecture == "harmonic_net":
        return HarmonicNet(config["n_bins"], config["bins_per_semitone"], config["fmin_midi"], config["channels"],
                           config.get("harmonics", DEFAULT_HARMONICS))
    acoustic = "conv" if architecture == "onsets_frames" else "harmonic_attention"
    return OnsetsAndFrames(config["n_bins"], config["bins_per_semitone"], config["fmin_midi"], acoustic,
                           config["channels"], config["hidden"], config.get("n_classes", 1))


class Network(Family):
    name = "network"
    description = "a trainable network on the CQT: HarmonicNet, Onsets and Frames, harmonic attention"
    schema_definition = "model_network"
    #: its training follows the CPU's float kernels: between AVX2 and AVX-512 its
    #: default-study rows moved by up to 0.094 (frame F; note F 0.030)
    cpu_tolerance = 0.1
    params = (
        Param("architecture", "harmonic_net",
              type="string", enum=["harmonic_net", "onsets_frames", "harmonic_attention"],
              meaning="`harmonic_net` the Basic-Pitch-style harmonic-CQT CNN; `onsets_frames` convolutions, "
                      "bidirectional LSTMs, onset, offset and frame heads, frames conditioned on onsets (Hawthorne "
                      "et al. 2018); `harmonic_attention` attention across frequency along the harmonic series, "
                      "then the same heads (after Wu et al., ICASSP 2024). See src/lowrank_amt/deep/."),
        Param("epochs", 30, type="integer", minimum=1, maximum=10000, meaning="Maximum training epochs."),
        Param("patience", 5, type="integer", minimum=1, maximum=1000,
              meaning="Stop after this many epochs without a lower validation loss; the best epoch's weights are "
                      "kept."),
        STEPS_PER_EPOCH,
        Param("batch_segments", 8, type="integer", minimum=1, maximum=4096, meaning="Segments per mini-batch."),
        Param("segment_frames", 128, type="integer", minimum=8, maximum=10000,
              meaning="Frames per training segment (128 is about 3 s)."),
        Param("learning_rate", 0.001, type="number", exclusiveMinimum=0, meaning="Adam learning rate."),
        Param("lr_decay", 1.0, type="number", exclusiveMinimum=0, maximum=1,
              meaning="Learning rate multiplied by this after every epoch (1: constant)."),
        Param("channels", 16, type="integer", minimum=1, maximum=512,
              meaning="Convolution channels (harmonic_net: 16 gives 37,813 parameters, 8 gives 18,925; "
                      "onsets_frames: 8 with hidden 96 gives about 0.3 M, 32 with hidden 384 about 3.3 M)."),
        Param("hidden", 96, type="integer", minimum=2, maximum=4096,
              meaning="onsets_frames and harmonic_attention: features per frame after the acoustic stack; each "
                      "bidirectional LSTM has half as many units per direction."),
        Param("instrument_outputs", False, type="boolean",
              meaning="onsets_frames, harmonic_attention: one set of outputs per instrument class of the dataset "
                      "(the feature index's classes), trained on each class's roll; transcription then names each "
                      "note's instrument (one MIDI track per class). The note output is the largest over classes."),
        Param("seed", 0, type="integer", minimum=0, meaning="Seed of initialisation and batch order."),
        AUGMENT,
        DEVICE,
        TEACHER,
    )

    def skip(self, spec):
        if spec["instrument_outputs"] and spec["architecture"] == "harmonic_net":
            return True, "model key 'instrument_outputs' is for architectures 'onsets_frames' and 'harmonic_attention'"
        return False, ""

    def fit(self, spec, run, log=print):
        validation = read_index(run.index_path, "validation")
        if validation.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'validation' tracks for early stopping")
        params = cache_params(run.index_path)
        classes = index_classes(run.index_path) if spec["instrument_outputs"] else []
        target = "class_roll" if classes else "roll"
        batches = FrameBatches(run.index_path, "train", spec["batch_segments"] * spec["segment_frames"],
                               spec["seed"], segment_frames=spec["segment_frames"], shuffle=True,
                               train_hours=run.train_hours, target=target, max_batches=spec["steps_per_epoch"] or None,
                               augment=augmentation(spec["augment"]))
        torch.manual_seed(spec["seed"])
        model = build_model(params, spec, max(1, len(classes))).to(run.device)
        # eval mode: batch-norm running statistics, no dropout
        score = note_f_scorer(run.index_path, lambda model: lambda f: note_posteriorgram(model.eval(), f, run.device),
                              log)
        learner = NetworkLearner(model, torch.optim.Adam(model.parameters(), lr=spec["learning_rate"]), batches,
                                 validation, run.device, score=score, lr_decay=spec["lr_decay"], target=target)
        log(f"network: {n_parameters(model)} parameters, {batches.n_frames} training frames, on {run.device}")
        state = fit_epochs(learner, epochs=spec["epochs"], patience=spec["patience"],
                           checkpoint_path=run.checkpoint_path, device=run.device, log=log,
                           fingerprint=fingerprint(spec, run.train_hours, batches.n_frames))
        log(f"best validation loss {state['best_loss']:.4f} at epoch {state['best_epoch']}")
        arrays = {WEIGHTS + k: v.numpy() for k, v in state["best"].items()}
        info = {"train_seconds": state["seconds"], "train_cpu_seconds": state["cpu_seconds"],
                "n_parameters": n_parameters(model), "epochs": state["epoch"], "best_epoch": state["best_epoch"],
                "best_validation_loss": state["best_loss"], "stopped_early": state["stopped_early"],
                "n_training_frames": batches.n_frames, "architecture": spec["architecture"],
                **{f"model_{k}": v for k, v in model.config.items() if k != "architecture"}}
        config = {**model.config, **({"classes": [CLASSES.index(c) for c in classes]} if classes else {})}
        return Trained({**arrays, "config": json.dumps(config)}, pd.DataFrame(state["history"]), info)

    def load_network(self, arrays, device) -> torch.nn.Module:
        """The trained network of a model's arrays, in eval mode on ``device``."""
        model = network_of(json.loads(str(arrays["config"])))  # (the config's classes are the outputs')
        model.load_state_dict({k[len(WEIGHTS):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                               if k.startswith(WEIGHTS)})
        return model.to(device).eval()

    def transcriber(self, arrays, spec, device):
        model = self.load_network(arrays, device)
        classes = json.loads(str(arrays["config"])).get("classes")
        if not classes:
            return lambda features: {"note": posteriorgram(model, features, device)}

        def transcribe(features):
            by_class = posteriorgram(model, features, device).reshape(len(classes), N_KEYS, -1)
            return {"note": by_class.max(axis=0), "by_class": by_class, "classes": np.array(classes)}
        return transcribe


def posteriorgram(model, features, device) -> np.ndarray:
    """The note posteriorgram (88 x frames, or 88 per class, class-major) of a track; the
    model in eval mode."""
    return torch.sigmoid(track_logits(model, features, device)[0]).numpy()


def note_posteriorgram(model, features, device) -> np.ndarray:
    """The instrument-agnostic posteriorgram (88 x frames): the largest over classes."""
    p = posteriorgram(model, features, device)
    return p.reshape(-1, N_KEYS, p.shape[1]).max(axis=0)
