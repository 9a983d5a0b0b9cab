"""Training of the low-rank families, as functions of the family and its spec (the
family's ``fit`` chooses one): templates from the isolated notes (``fit_supervised``),
all training frames at once (``fit_full_batch_form``) or the epochs of a mini-batch
form (``fit_epochs_form``, with ``make_learner``). ``lowrank.py`` states the
conventions: supervision, forms, templates per key and attack templates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..constants import N_KEYS
from ..errors import LowrankAmtError
from ..factorization import nmf
from ..factorization.activations import track_activations
from ..factorization.core import generator
from ..factorization.training import DictionaryLearner, GradientStep, OnlineMU, fit_full_batch
from ..instruments import index_classes, track_class
from ..learning.augment import augmentation
from ..learning.epoch_scoring import note_f_scorer
from ..learning.epochs import fingerprint, fit_epochs
from ..learning.loader import FrameBatches, attack_rows, select_training_tracks
from ..signal.feature_cache import load_cached, load_track, read_index
from .base import Trained


def start_dictionary(family, spec, run, n_bins, scale, like, log):
    """The dictionary training starts from: random entries of size ``scale``, or, with
    ``dictionary_start: isolated``, the supervised templates of the isolated notes
    (same layout), scaled to the same mean."""
    W0 = family.numerics.init_dictionary(n_bins, family.n_templates(spec, run.index_path), scale, generator(spec["seed"]), like,
                              **family.options(spec))
    if spec["dictionary_start"] == "random":
        return W0
    log("starting from the templates of the isolated notes")
    W, _, _ = (fit_class_templates if spec["instrument_templates"] else fit_supervised)(family, spec, run, log)
    W = torch.from_numpy(W).to(W0)
    return W * (W0.mean() / W.mean())


def fit_supervised(family, spec, run, log, index=None):
    """Templates per key from the isolated tracks (``index``: some of them; then keys
    without a note get none, as an instrument's range leaves them)."""
    every_key = index is None
    index = read_index(run.index_path, "isolated") if index is None else index
    if index.empty:
        raise LowrankAmtError(f"{run.index_path} has no 'isolated' tracks to learn supervised templates from")
    A, P = spec["attack_frames"], spec["templates_per_key"]

    def tracks(part):  # (features, the rows of the note part to learn from)
        for row in index.itertuples():
            features, roll = load_track(row)
            if not A:
                yield features, roll
                continue
            attack = track_attack_rows(row, A, run.index_path)
            yield features, (attack if part == "attack" else roll & ~attack)
    W, curves = nmf.learn_supervised_templates(
        tracks("sustain"), lambda V, seed: family.learn_key_template(V, spec, seed, P), spec["seed"], run.device, log,
        every_key)
    if A:
        log(f"attack templates from the first {A} frames of each note")
        W_attack, attack_curves = nmf.learn_supervised_templates(
            tracks("attack"), lambda V, seed: family.learn_key_template(V, spec, seed), spec["seed"], run.device, log)
        W, curves = np.concatenate([W, W_attack], axis=-1), curves + attack_curves
    losses = pd.DataFrame([{"template": k, "iteration": i, "loss": loss}
                           for k, curve in enumerate(curves) for i, loss in enumerate(curve)])
    return W, losses, {"n_training_frames": int(sum(len(c) for c in curves))}


def fit_class_templates(family, spec, run, log):
    """Templates per instrument class (``instruments.index_classes``) and key: ``fit_supervised``
    on each class's isolated tracks (a track's class: its MIDI program's,
    ``instruments.py``), class-major as ``LowRankFamily.layout`` lays them out."""
    index = read_index(run.index_path, "isolated")
    classes = np.array([track_class(row.midi_path) for row in index.itertuples()])
    Ws, tables, frames = [], [], 0
    for name in index_classes(run.index_path):
        if not (classes == name).any():
            raise LowrankAmtError(f"{run.index_path} has no isolated notes of class {name!r} to learn its templates from")
        log(f"templates of class {name} ({int((classes == name).sum())} isolated tracks)")
        W, losses, info = fit_supervised(family, spec, run, log, index[classes == name].reset_index(drop=True))
        Ws.append(W)
        tables.append(losses.assign(template=losses["template"] + sum(w.shape[-1] for w in Ws[:-1])))
        frames += info["n_training_frames"]
    return np.concatenate(Ws, axis=-1), pd.concat(tables), {"n_training_frames": frames}


def training_tensors(family, spec, run):
    """All training frames at once: V (F x N, or S x F x T when segmented) and the roll mask."""
    tracks = select_training_tracks(read_index(run.index_path), run.train_hours)
    if tracks.empty:
        raise LowrankAmtError(f"{run.index_path} has no 'train' tracks")
    pieces = [load_track(row) for row in tracks.itertuples()]
    # each track as the numerics take it: bins x frames, or segments x bins x frames (NTD)
    V = torch.cat([family.as_data(torch.from_numpy(np.array(f, dtype=np.float32)), spec) for f, _ in pieces],
                  dim=0 if family.segmented else 1)
    mask_of = family.mask_of(spec)
    if mask_of is None:
        return V.to(run.device), None
    # laid out like the features; instrument templates are masked by each class's roll
    targets = [np.asarray(load_cached(row.class_roll_path) if spec["instrument_templates"] else roll, dtype=np.float32)
               for (_, roll), row in zip(pieces, tracks.itertuples())]
    if spec["attack_frames"]:
        targets = [np.concatenate([roll, track_attack_rows(row, spec["attack_frames"], run.index_path)])
                   for roll, row in zip(targets, tracks.itertuples())]
    targets = torch.cat([family.as_data(torch.from_numpy(t), spec) for t in targets], dim=0 if family.segmented else 1)
    return V.to(run.device), torch.from_numpy(mask_of(targets.numpy()).astype(np.float32)).to(run.device)


def fit_full_batch_form(family, spec, run, log):
    V, mask = training_tensors(family, spec, run)
    K = family.n_templates(spec, run.index_path)
    W0 = start_dictionary(family, spec, run, V.shape[-2], float((V.mean() / K).sqrt()), V, log)
    log(f"full-batch {family.name}: {tuple(V.shape)} data, {K} templates, on {run.device}")
    with torch.no_grad():
        W, _, losses = fit_full_batch(family.numerics, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"],
                                      tol=spec["tol"], l1=spec["sparsity"], mask=mask, seed=spec["seed"],
                                      options=family.options(spec), log=log)
    frames = V.numel() // V.shape[-2]
    table = pd.DataFrame({"iteration": np.arange(len(losses)), "split": "train",
                          "loss": np.asarray(losses) / frames})
    return W.cpu().numpy(), table, {"n_training_frames": frames, "iterations": len(losses) - 1}


def fit_epochs_form(family, spec, run, log):
    learner, n_frames = make_learner(family, spec, run, log)
    state = fit_epochs(learner, epochs=spec["epochs"], patience=spec["patience"],
                       checkpoint_path=run.checkpoint_path, device=run.device, log=log,
                       fingerprint=fingerprint(spec, run.train_hours, n_frames))
    extra = {"n_training_frames": n_frames, "epochs": state["epoch"], "best_epoch": state["best_epoch"],
             "stopped_early": state["stopped_early"], "train_seconds": state["seconds"],
             "train_cpu_seconds": state["cpu_seconds"]}
    return state["best"].cpu().numpy(), pd.DataFrame(state["history"]), extra


def make_learner(family, spec, run, log):
    segment_frames = spec["segment_frames"] if family.segment_batches or family.segmented else None
    attack_frames = spec["attack_frames"] if family.supervision(spec).masks else 0
    target = "class_roll" if spec["instrument_templates"] else "roll"
    batches = FrameBatches(run.index_path, "train", spec["batch_frames"], spec["seed"],
                           segment_frames=segment_frames, shuffle=True, train_hours=run.train_hours,
                           attack_frames=attack_frames, target=target, augment=augmentation(spec["augment"]))
    try:
        validation = FrameBatches(run.index_path, "validation", spec["batch_frames"], spec["seed"],
                                  segment_frames=segment_frames, shuffle=False, attack_frames=attack_frames,
                                  target=target)
    except LowrankAmtError:
        validation = None
        log("no validation tracks: early stopping watches the training loss")
    first, _ = next(iter(batches.epoch(0)))
    K = family.n_templates(spec, run.index_path)
    W0 = start_dictionary(family, spec, run, batches.n_bins, float(np.sqrt(first.mean() / K)),
                               torch.zeros((), device=run.device), log)
    if spec["form"] == "online_mu":
        updater = OnlineMU(W0, beta=spec["beta"], forget_factor=spec["forget_factor"],
                           total_frames=batches.n_frames)
    else:
        updater = GradientStep(W0, beta=spec["beta"], optimizer=spec["optimizer"],
                               learning_rate=spec["learning_rate"], momentum=spec["momentum"],
                               lr_decay=spec["lr_decay"])
    log(f"{spec['form']} {family.name}: {batches.n_frames} training frames, {K} templates, on {run.device}")
    score = validation_scorer(family, spec, run, validation, log)
    learner = DictionaryLearner(family.numerics, updater, batches, beta=spec["beta"],
                                inner_iterations=spec["inner_iterations"], l1=spec["sparsity"],
                                mask_of=family.mask_of(spec), seed=spec["seed"],
                                device=run.device, options=family.options(spec), validation_batches=validation,
                                validation_score=score, score_every=max(1, spec["validation_note_f_every"]))
    return learner, batches.n_frames


def validation_scorer(family, spec, run, validation_batches, log):
    """W (a tensor, as training holds it) -> ``validation_note_f`` of the model that
    training would save from it (templates given keys, normalized, dead ones
    dropped); None when the spec or the data ask for no score."""
    if validation_batches is None or not spec["validation_note_f_every"]:
        return None

    def transcriber_of(W):
        W = W.cpu().numpy()
        W, keys = normalized_templates(W, family.assign_template_keys(spec, W, run.index_path))
        return lambda features: track_activations(family, features, W, keys, spec, run.device)["note"]
    return note_f_scorer(run.index_path, transcriber_of, log)


def track_attack_rows(row, attack_frames: int, index_path) -> np.ndarray:
    """``loader.attack_rows`` of one track of a feature index (a row with its onsets)."""
    if not getattr(row, "onsets_path", None):
        raise LowrankAmtError(f"feature index {index_path} has no onset targets for track "
                              f"{row.track_id}; extract the features again")
    return attack_rows(load_cached(row.onsets_path), attack_frames)


def template_layout(spec) -> tuple[np.ndarray, np.ndarray]:
    """(key, is attack) of each per-key template: ``templates_per_key`` templates of key
    0, of key 1, ..., then, with ``attack_frames``, one attack template per key."""
    P, attack = spec["templates_per_key"], 1 if spec["attack_frames"] else 0
    keys = np.concatenate([np.repeat(np.arange(N_KEYS), P), np.arange(N_KEYS * attack)])
    return keys, np.repeat([0, 1], [N_KEYS * P, N_KEYS * attack]).astype(np.uint8)


def normalized_templates(W: np.ndarray, *labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Templates (last axis of W) scaled to unit sum, and ``labels`` (arrays with one
    entry per template) of the templates kept: dead ones (a key never played in
    semi-supervised training leaves its template at the eps floor) are removed."""
    totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
    alive = totals > 1e-6 * totals.max()
    return ((W[..., alive] / totals[alive]).astype(np.float32), *(np.asarray(a)[alive] for a in labels))


def fit(family, spec, run, log=print):
    """The family's ``fit``: its supervision and form choose how (the module's functions);
    the templates normalised, each with its key, attack flag and class."""
    if spec["instrument_templates"] and family.supervision(spec).training_data == "isolated":
        W, losses, extra = fit_class_templates(family, spec, run, log)
    elif family.supervision(spec).training_data == "isolated":
        log(f"learning {family.n_templates(spec)} templates (beta={spec['beta']}, {spec['train_iterations']} iterations) "
            f"on {run.device}")
        W, losses, extra = fit_supervised(family, spec, run, log)
    elif spec["form"] == "full_batch":
        W, losses, extra = fit_full_batch_form(family, spec, run, log)
    else:
        W, losses, extra = fit_epochs_form(family, spec, run, log)
    keys = family.assign_template_keys(spec, W, run.index_path)
    _, attack, classes = family.layout(spec, run.index_path) if family.supervision(spec).keyed else \
        (None, np.zeros(len(keys)), np.zeros(len(keys), dtype=np.int64))
    W, keys, attack, classes = normalized_templates(W, keys, attack, classes)
    info = {"n_parameters": int(W.size), "n_templates_with_key": int((keys >= 0).sum()), **extra}
    arrays = {"W": W, "template_keys": keys, **({"template_attack": attack} if spec["attack_frames"] else {}),
              **({"template_classes": classes.astype(np.int64)} if spec["instrument_templates"] else {})}
    return Trained(arrays, losses, info)


def adapt_dictionary(family, arrays, spec, features, roll, device, iterations):
    """``iterations`` full-batch MU steps on the dictionary from the trained one (the
    prior: templates move only as far as these few steps take them). With a roll, each
    template is active only where its key sounds, and templates of keys that never
    sound keep their trained values; without one (adapting on the recording to be
    transcribed), every template moves."""
    if family.segmented:
        raise LowrankAmtError(f"family '{family.name}' cannot adapt its dictionary (a Tucker core would have "
                              "to be re-learned too)")
    W0 = torch.from_numpy(np.asarray(arrays["W"], dtype=np.float32)).to(device)
    keys = np.asarray(arrays["template_keys"])
    V = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
    mask, heard = None, np.ones(len(keys), dtype=bool)
    if roll is not None:
        rows = np.where(keys[:, None] >= 0, np.asarray(roll)[np.maximum(keys, 0), : V.shape[1]], 0)
        heard = rows.any(axis=1)
        mask = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(device)
    with torch.no_grad():
        W, _, _ = fit_full_batch(family.numerics, V, W0.clone(), beta=spec["beta"], n_iter=iterations, l1=spec["sparsity"],
                                 mask=mask, seed=spec["seed"], options=family.options(spec))
    W = W.cpu().numpy()
    W[..., ~heard] = arrays["W"][..., ~heard]
    totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
    return {**arrays, "W": (W / np.maximum(totals, 1e-12)).astype(np.float32)}
