"""Model stages as functions from files to files: train a model, compute activations.
The CLI and the Snakemake rules call these; each writes its outputs atomically.

A model spec names a ``family`` (nmf | nmfd | ntd), a ``supervision`` (supervised:
one template per key from the isolated notes; semi_supervised: 88 templates learned on
the training pieces with activations confined to their piano roll; unsupervised:
``rank`` free templates, each given a pitch afterwards) and a training ``form``
(full_batch | online_mu | gradient; supervised models are always learned full-batch).
Missing keys take ``MODEL_DEFAULTS``. The mini-batch forms log, every
``validation_note_f_every`` epochs (0: never), the validation note F of the dictionary
at that epoch (``validation_note_f``).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .constants import N_KEYS, ONSET_TOLERANCE
from .decode import DEFAULTS as DECODING_DEFAULTS
from .decode import tune_threshold
from .errors import LowrankAmtError
from .factorization import nmfd as nmfd_family
from .factorization.core import generator, pick_device
from .factorization.nmf import learn_supervised_templates
from .factorization.ntd import segment
from .factorization.training import (FAMILIES, GradientStep, OnlineMU, checkpoint_file, fit_epochs,
                                     fit_full_batch)
from .factorization.transcribe import template_keys, transcribe
from .features import bin_frequencies, load_track, read_index
from .io import atomic_path, read_json, write_json
from .notes import read_midi_notes

# learning_rate: Adam's steps on log W are relative (at most about lr per step); at 0.1,
# a small study's few batches per epoch leave unsupervised templates near their random start.
MODEL_DEFAULTS = {
    "family": "nmf", "supervision": "supervised", "form": "full_batch", "beta": 1.0,
    "train_iterations": 100, "transcribe_iterations": 100, "tol": 1e-4, "sparsity": 0.0,
    "seed": 0, "device": "auto", "rank": 88, "time_extent": 8, "segment_frames": 32,
    "time_rank": 8, "segment_rank": 16, "batch_frames": 4096, "epochs": 20,
    "inner_iterations": 10, "forget_factor": 0.5, "optimizer": "adam", "learning_rate": 1.0,
    "momentum": 0.9, "lr_decay": 0.95, "patience": 3, "validation_note_f_every": 1,
}
#: Thresholds of the plain thresholding decoder over which the per-epoch validation note
#: F takes its best: a small grid (the decoding stage tunes a larger one), so that the
#: curve follows the dictionary rather than one threshold that suits it.
VALIDATION_THRESHOLDS = (0.05, 0.1, 0.2, 0.3)
F16_MAX = float(np.finfo(np.float16).max)
CHOICES = {"family": ("nmf", "nmfd", "ntd"),
           "supervision": ("supervised", "semi_supervised", "unsupervised"),
           "form": ("full_batch", "online_mu", "gradient"), "optimizer": ("adam", "sgd")}


def model_spec(spec: dict) -> dict:
    """``spec`` with defaults filled in; an unknown value or combination names the key."""
    spec = {**MODEL_DEFAULTS, **spec}
    for key, allowed in CHOICES.items():
        if spec[key] not in allowed:
            raise LowrankAmtError(f"model key '{key}' is {spec[key]!r}; allowed: {', '.join(allowed)}")
    if spec["supervision"] == "supervised" and spec["form"] != "full_batch":
        raise LowrankAmtError("model key 'form' must be 'full_batch' for supervision 'supervised' "
                              "(templates are learned key by key from the isolated notes)")
    every = spec["validation_note_f_every"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise LowrankAmtError(f"model key 'validation_note_f_every' must be an integer >= 0, got {every!r}")
    if spec["family"] == "ntd" and spec["supervision"] == "semi_supervised":
        raise LowrankAmtError("supervision 'semi_supervised' is not available for family 'ntd' "
                              "(its activations are a Tucker product, which a piano roll cannot mask)")
    return spec


def _options(spec):
    return {"time_extent": spec["time_extent"], "time_rank": spec["time_rank"],
            "segment_rank": spec["segment_rank"]}


def _train_supervised(spec, index_path, device, log):
    index = read_index(index_path, "isolated")
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no 'isolated' tracks to learn supervised templates from")
    fit_key = None
    if spec["family"] == "nmfd":
        def fit_key(V, key_seed):
            W0 = nmfd_family.init_dictionary(V.shape[0], 1, float(V.mean().sqrt()), generator(key_seed), V,
                                             time_extent=spec["time_extent"])
            W, _, losses = fit_full_batch(nmfd_family, V, W0, beta=spec["beta"],
                                          n_iter=spec["train_iterations"], seed=key_seed)
            return W[..., 0], losses
    W, curves = learn_supervised_templates((load_track(r) for r in index.itertuples()), spec["beta"],
                                           spec["train_iterations"], spec["seed"], device, log, fit_key)
    losses = pd.DataFrame([{"template": k, "iteration": i, "loss": loss}
                           for k, curve in enumerate(curves) for i, loss in enumerate(curve)])
    return W, losses, int(sum(len(c) for c in curves)), {}


def _training_tensors(spec, index_path, train_hours, device):
    """All training frames at once: V (F x N, or S x F x T for NTD) and the roll mask."""
    from .loader import select_training_tracks
    tracks = select_training_tracks(read_index(index_path), train_hours)
    if tracks.empty:
        raise LowrankAmtError(f"{index_path} has no 'train' tracks")
    pieces = [load_track(row) for row in tracks.itertuples()]
    if spec["family"] == "ntd":
        return torch.cat([segment(torch.from_numpy(np.array(f, dtype=np.float32)).to(device), spec["segment_frames"])
                          for f, _ in pieces]), None
    V = torch.from_numpy(np.concatenate([np.asarray(f, dtype=np.float32) for f, _ in pieces], axis=1)).to(device)
    mask = None
    if spec["supervision"] == "semi_supervised":
        mask = torch.from_numpy(np.concatenate([np.asarray(r, dtype=np.float32) for _, r in pieces], axis=1)).to(device)
    return V, mask


def _n_templates(spec):
    return spec["rank"] if spec["supervision"] == "unsupervised" else N_KEYS


def _train_full_batch(spec, index_path, train_hours, device, log):
    family = FAMILIES[spec["family"]]
    V, mask = _training_tensors(spec, index_path, train_hours, device)
    K = _n_templates(spec)
    W0 = family.init_dictionary(V.shape[-2], K, float((V.mean() / K).sqrt()), generator(spec["seed"]), V,
                                **_options(spec))
    log(f"full-batch {spec['family']}: {tuple(V.shape)} data, {K} templates, on {device}")
    with torch.no_grad():
        W, _, losses = fit_full_batch(family, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"],
                                      tol=spec["tol"], l1=spec["sparsity"], mask=mask, seed=spec["seed"],
                                      options=_options(spec), log=log)
    frames = V.numel() // V.shape[-2]
    table = pd.DataFrame({"iteration": np.arange(len(losses)), "split": "train",
                          "loss": np.asarray(losses) / frames})
    return W.cpu().numpy(), table, frames, {"iterations": len(losses) - 1}


def _train_epochs(spec, index_path, train_hours, checkpoint_dir, device, log):
    from .loader import FrameBatches
    family = FAMILIES[spec["family"]]
    segment_frames = None if spec["family"] == "nmf" else spec["segment_frames"]
    train_batches = FrameBatches(index_path, "train", spec["batch_frames"], spec["seed"],
                                 segment_frames=segment_frames, shuffle=True, train_hours=train_hours)
    try:
        validation = FrameBatches(index_path, "validation", spec["batch_frames"], spec["seed"],
                                  segment_frames=segment_frames, shuffle=False)
    except LowrankAmtError:
        validation = None
        log("no validation tracks: early stopping watches the training loss")
    first, _ = next(iter(train_batches.epoch(0)))
    K = _n_templates(spec)
    like = torch.zeros((), device=device)
    W0 = family.init_dictionary(train_batches.n_bins, K, float(np.sqrt(first.mean() / K)),
                                generator(spec["seed"]), like, **_options(spec))
    if spec["form"] == "online_mu":
        updater = OnlineMU(W0, beta=spec["beta"], forget_factor=spec["forget_factor"],
                           total_frames=train_batches.n_frames)
    else:
        updater = GradientStep(W0, beta=spec["beta"], optimizer=spec["optimizer"],
                               learning_rate=spec["learning_rate"], momentum=spec["momentum"],
                               lr_decay=spec["lr_decay"])
    fingerprint = json.dumps({**{k: v for k, v in spec.items() if k != "device"}, "train_hours": train_hours},
                             sort_keys=True)
    log(f"{spec['form']} {spec['family']}: {train_batches.n_frames} training frames, {K} templates, on {device}")
    score = None
    if validation is not None and spec["validation_note_f_every"]:
        if _has_references(index_path, "validation"):
            score = validation_scorer(spec, index_path, device)
        else:  # a hand-made feature cache (benchmarks, tests) has nothing to score against
            log("validation note F not logged: the validation tracks have no MIDI references")
    W, history = fit_epochs(family, updater, train_batches, beta=spec["beta"], epochs=spec["epochs"],
                            inner_iterations=spec["inner_iterations"], l1=spec["sparsity"],
                            masked=spec["supervision"] == "semi_supervised", validation_batches=validation,
                            patience=spec["patience"], checkpoint_path=checkpoint_file(checkpoint_dir),
                            fingerprint=fingerprint, seed=spec["seed"], device=device,
                            options=_options(spec), validation_score=score,
                            score_every=max(1, spec["validation_note_f_every"]), log=log)
    epochs_run = max((row["epoch"] for row in history), default=0)
    table = pd.DataFrame(history).rename(columns={"score": "validation_note_f"})
    return W.cpu().numpy(), table, train_batches.n_frames, {"epochs": epochs_run}


def validation_note_f(spec, W: np.ndarray, keys: np.ndarray, index_path, device) -> float:
    """Mean note-onset F over the validation tracks of the dictionary ``W`` (templates
    on the last axis, ``keys`` their piano keys): activations as the activations stage
    computes them, decoded by the plain thresholding decoder at the best of
    ``VALIDATION_THRESHOLDS`` (other decoding parameters at their defaults), scored with
    a 50 ms onset tolerance against the tracks' MIDI references."""
    index = read_index(index_path, "validation")
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no 'validation' tracks to score a dictionary on")
    tracks = [(transcribe(load_track(row)[0], W, keys, spec, device), *read_midi_notes(row.midi_path)[:2])
              for row in index.itertuples()]
    best, scores = tune_threshold(tracks, VALIDATION_THRESHOLDS, float(index["frame_rate"].iloc[0]),
                                  DECODING_DEFAULTS["min_note_seconds"], ONSET_TOLERANCE)
    return dict(scores)[best]


def _has_references(index_path, split) -> bool:
    rows = read_index(index_path, split)
    return "midi_path" in rows and rows["midi_path"].notna().all() and not rows.empty


def validation_scorer(spec, index_path, device):
    """W (a tensor, as training holds it) -> ``validation_note_f`` of the model that
    ``train`` would save from it: templates given keys, normalized, dead ones dropped."""
    def score(W: torch.Tensor) -> float:
        W = W.cpu().numpy()
        W, keys = normalized_templates(W, assign_template_keys(spec, W, index_path))
        return validation_note_f(spec, W, keys, index_path, device)
    return score


def assign_template_keys(spec, W: np.ndarray, index_path) -> np.ndarray:
    """Key (0..87, -1 for none) of each template: identity for 88 per-key templates, the
    estimated pitch for unsupervised ones."""
    if spec["supervision"] != "unsupervised":
        return np.arange(N_KEYS)
    from .pitch import estimate_template_pitches
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing: unsupervised templates need the feature "
                              "bins' frequencies to get a pitch; extract features again")
    params = read_json(params_path)
    frequencies = bin_frequencies(params, params.get("sample_rate", 22050))
    return template_keys(estimate_template_pitches(FAMILIES[spec["family"]].spectral_templates(W), frequencies))


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which starts afresh at exec
    (ru_maxrss would carry a parent's peak over fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def normalized_templates(W: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Templates (last axis of W) scaled to unit sum; dead ones (a key never played in
    semi-supervised training leaves its template at the eps floor) are removed."""
    totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
    alive = totals > 1e-6 * totals.max()
    return (W[..., alive] / totals[alive]).astype(np.float32), keys[alive]


def train(spec: dict, index_path, model_path, loss_path, info_path, log=print, *,
          checkpoint_dir=None, train_hours: float | None = None) -> None:
    """Learn a model's dictionary from the feature cache; write model.npz (W, the key of
    each template, the spec), loss.csv and train.json. ``train_hours`` trains on the
    first training tracks totalling that duration; ``checkpoint_dir`` holds the
    mini-batch forms' per-epoch checkpoint (``last.pt``), resumed when present."""
    spec = model_spec(spec)
    device = pick_device(spec["device"])
    wall, cpu = time.perf_counter(), time.process_time()
    if spec["supervision"] == "supervised":
        log(f"learning 88 templates (beta={spec['beta']}, {spec['train_iterations']} iterations) on {device}")
        W, losses, n_frames, extra = _train_supervised(spec, index_path, device, log)
    elif spec["form"] == "full_batch":
        W, losses, n_frames, extra = _train_full_batch(spec, index_path, train_hours, device, log)
    else:
        W, losses, n_frames, extra = _train_epochs(spec, index_path, train_hours, checkpoint_dir, device, log)
    W, keys = normalized_templates(W, assign_template_keys(spec, W, index_path))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with atomic_path(loss_path) as tmp:
        losses.to_csv(tmp, index=False)
    write_json(info_path, {"train_seconds": wall, "train_cpu_seconds": cpu, "device": str(device),
                           "n_parameters": int(W.size), "n_training_frames": int(n_frames),
                           "n_templates_with_key": int((keys >= 0).sum()), "train_hours": train_hours,
                           "peak_rss_mb": peak_rss_mb(), **extra})
    with atomic_path(model_path) as tmp:
        np.savez(tmp, W=W, template_keys=keys, spec=json.dumps(spec))
    log(f"trained in {wall:.1f} s wall, {cpu:.1f} s CPU")


def activations(spec: dict, model_path, index_path, activations_path, info_path, log=print) -> None:
    """Pitch activations (88 x frames) of every validation and test track, with the
    dictionary fixed; saved as float16 arrays named ``<split>__<track_id>``."""
    spec = model_spec(spec)
    device = pick_device(spec["device"])
    model = np.load(model_path)
    W = model["W"]
    keys = model["template_keys"] if "template_keys" in model.files else np.arange(W.shape[-1])
    write_activations(index_path, activations_path, info_path, device, log,
                      lambda features: transcribe(features, W, keys, spec, device))


def write_activations(index_path, activations_path, info_path, device, log, estimate) -> None:
    """Run ``estimate`` (features F x frames -> activations 88 x frames) on every
    validation and test track and write the shared activations format: float16 arrays
    named ``<split>__<track_id>`` (clipped to float16's range), and ``info_path`` with the
    time per minute of audio and the device. Every model family's activations stage ends here."""
    index = read_index(index_path)
    wall, audio_seconds, arrays = time.perf_counter(), 0.0, {}
    for split in ("validation", "test"):
        rows = index[index["split"] == split]
        if rows.empty:
            raise LowrankAmtError(f"{index_path} has no '{split}' tracks")
        for row in rows.itertuples():
            features, _ = load_track(row)
            arrays[f"{split}__{row.track_id}"] = np.minimum(estimate(features), F16_MAX).astype(np.float16)
            audio_seconds += row.duration
            log(f"activations: {split}/{row.track_id}")
    seconds = time.perf_counter() - wall
    with atomic_path(activations_path) as tmp:
        np.savez_compressed(tmp, **arrays)
    write_json(info_path, {"activation_seconds": seconds, "audio_seconds": audio_seconds,
                           "seconds_per_audio_minute": 60 * seconds / audio_seconds, "device": str(device)})
