"""Model stages as functions from files to files: train a model, compute activations.
The CLI and the Snakemake rules call these; each writes its outputs atomically."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from .errors import LowrankAmtError
from .factorization.core import pick_device
from .factorization.nmf import learn_supervised_templates, transcribe_activations
from .features import load_track, read_index
from .io import atomic_path, write_json


def train(spec: dict, index_path, model_path, loss_path, info_path, log=print) -> None:
    """Learn a model's dictionary from the feature cache (supervised NMF: isolated notes)."""
    if (spec["family"], spec["supervision"]) != ("nmf", "supervised"):
        raise LowrankAmtError(f"model family {spec['family']!r} with supervision {spec['supervision']!r} is not available")
    device = pick_device(spec["device"])
    index = read_index(index_path, "isolated")
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no 'isolated' tracks to learn supervised templates from")
    log(f"learning 88 templates (beta={spec['beta']}, {spec['train_iterations']} iterations) on {device}")
    wall, cpu = time.perf_counter(), time.process_time()
    W, curves = learn_supervised_templates((load_track(r) for r in index.itertuples()),
                                           spec["beta"], spec["train_iterations"], spec["seed"], device, log)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    losses = pd.DataFrame([{"template": k, "iteration": i, "loss": loss}
                           for k, curve in enumerate(curves) for i, loss in enumerate(curve)])
    with atomic_path(loss_path) as tmp:
        losses.to_csv(tmp, index=False)
    write_json(info_path, {"train_seconds": wall, "train_cpu_seconds": cpu, "device": str(device),
                           "n_parameters": int(W.size), "n_training_frames": int(sum(len(c) for c in curves))})
    with atomic_path(model_path) as tmp:
        np.savez(tmp, W=W, spec=json.dumps(spec))
    log(f"trained in {wall:.1f} s wall, {cpu:.1f} s CPU")


def activations(spec: dict, model_path, index_path, activations_path, info_path, log=print) -> None:
    """Pitch activations (88 x frames) of every validation and test track, with the
    dictionary fixed; saved as float16 arrays named ``<split>__<track_id>``."""
    device = pick_device(spec["device"])
    W = np.load(model_path)["W"]
    index = read_index(index_path)
    wall, audio_seconds = time.perf_counter(), 0.0
    arrays = {}
    for split in ("validation", "test"):
        rows = index[index["split"] == split]
        if rows.empty:
            raise LowrankAmtError(f"{index_path} has no '{split}' tracks")
        for row in rows.itertuples():
            features, _ = load_track(row)
            H = transcribe_activations(features, W, spec["beta"], spec["transcribe_iterations"],
                                       spec["sparsity"], spec["seed"], device)
            arrays[f"{split}__{row.track_id}"] = H.astype(np.float16)
            audio_seconds += row.duration
            log(f"activations: {split}/{row.track_id}")
    seconds = time.perf_counter() - wall
    with atomic_path(activations_path) as tmp:
        np.savez_compressed(tmp, **arrays)
    write_json(info_path, {"activation_seconds": seconds, "audio_seconds": audio_seconds,
                           "seconds_per_audio_minute": 60 * seconds / audio_seconds, "device": str(device)})
