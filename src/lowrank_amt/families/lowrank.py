"""The low-rank families (NMF, NMFD, NTD): a dictionary of spectral templates W, and
activations estimated by multiplicative updates with W fixed.

A spec names a ``supervision`` (supervised: one template per key from the isolated
notes; semi_supervised: 88 templates learned on the training pieces with activations
confined to their piano roll; unsupervised: ``rank`` free templates, each given a pitch
afterwards) and a training ``form`` (full_batch | online_mu | gradient; supervised
models are always learned full-batch). The mini-batch forms log, every
``validation_note_f_every`` epochs (0: never), the validation note F of the dictionary
at that epoch (``validation_note_f``).

Templates per key. Supervised and semi-supervised models hold ``templates_per_key``
templates for each key (key-major), and, with ``attack_frames`` A > 0, one *attack*
template per key after them, active only in the first A frames of each note (the
sustained templates cover the whole note, a supervised one its frames after the
attack). Semi-supervised training masks each template by its key's roll (attack
templates by the roll's first A frames of each note); supervised training fits each
key's isolated frames at rank ``templates_per_key`` and its attack frames at rank 1.

A model's arrays: ``W`` (templates on the last axis, each of unit sum; templates that
training left dead are dropped), ``template_keys`` (the piano key 0..87 of each
template, -1 for none) and, with attack templates, ``template_attack`` (1 for an attack
template). Transcription sums each key's template activations (``note``); with attack
templates it also gives their activations per key (``onset``), which the decoder's
``attack`` onset method reads.

``LowRankFamily`` holds everything the three share; a family supplies its numerics
(``numerics``: a module of ``factorization/``, see ``factorization/training.py``), which
training receives, and its data layout. A variant (e.g. a penalty on W) gives a family
other numerics: an object that changes one function of a module's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..constants import MIDI_MIN, N_KEYS
from ..epochs import fingerprint, fit_epochs
from ..errors import LowrankAmtError
from ..factorization import nmf, nmfd, ntd
from ..factorization.core import generator
from ..factorization.training import DictionaryLearner, GradientStep, OnlineMU, fit_full_batch
from ..factorization.activations import template_keys, track_activations
from ..features import bin_frequencies, cache_params, load_track, read_index
from ..loader import FrameBatches, attack_rows, select_training_tracks
from ..epoch_scoring import note_f_scorer
from .base import Family, Trained
from .params import Param

# learning_rate: Adam's steps on log W are relative (at most about lr per step); at 0.1,
# a small study's few batches per epoch leave unsupervised templates near their random start.
PARAMS = (
    Param("supervision", "supervised", type="string", enum=["supervised", "semi_supervised", "unsupervised"],
          meaning="`supervised`: one template per key learned from the isolated notes, then fixed; "
                  "`semi_supervised`: 88 templates learned on the training pieces with each template active "
                  "only where its key sounds (nmf, nmfd); `unsupervised`: `rank` free templates, each given a "
                  "pitch afterwards."),
    Param("form", "full_batch", type="string", enum=["full_batch", "online_mu", "gradient"],
          meaning="How the dictionary is trained: `full_batch` (all training frames at once, MU to a "
                  "tolerance); `online_mu` (mini-batches with running sufficient statistics and a forget "
                  "factor); `gradient` (mini-batches, Adam or SGD on the dictionary, activations by inner MU). "
                  "Supervised models are always full-batch."),
    Param("beta", 1.0, type="number", minimum=0, maximum=3,
          meaning="Beta of the beta-divergence (0 Itakura-Saito, 1 Kullback-Leibler, 2 Euclidean)."),
    Param("train_iterations", 100, type="integer", minimum=1, maximum=100000,
          meaning="Full-batch multiplicative-update iterations (per template for supervised models)."),
    Param("transcribe_iterations", 100, type="integer", minimum=1, maximum=100000,
          meaning="Multiplicative-update iterations when estimating the activations of a track."),
    Param("tol", 0.0001, type="number", minimum=0,
          meaning="Full-batch training stops when the relative loss decrease falls under this."),
    Param("sparsity", 0.0, type="number", minimum=0, meaning="L1 penalty on activations (0 = none)."),
    Param("rank", 88, type="integer", minimum=1, maximum=10000,
          meaning="Number of free templates of unsupervised models."),
    Param("time_extent", 8, type="integer", minimum=1, maximum=200,
          meaning="Frames of time extent of each NMFD template."),
    Param("segment_frames", 32, type="integer", minimum=2, maximum=10000,
          meaning="NTD: frames per segment of the tensor segments x frequency x time."),
    Param("time_rank", 8, type="integer", minimum=1, maximum=1000,
          meaning="NTD: rank of the time-within-segment factor."),
    Param("segment_rank", 16, type="integer", minimum=1, maximum=10000, meaning="NTD: rank of the segment factor."),
    Param("transcribe_time_rank", None, type=["integer", "null"], minimum=1, maximum=1000,
          meaning="NTD: rank of the time factor when transcribing a track with the dictionary fixed (the core, "
                  "segment and time factors are fitted to the track); null = time_rank."),
    Param("transcribe_segment_rank", None, type=["integer", "null"], minimum=1, maximum=10000,
          meaning="NTD: rank of the segment factor when transcribing; null = segment_rank. A 30 s piece has "
                  "about 41 segments of 32 frames: a rank at or above that leaves each segment its own "
                  "activations."),
    Param("batch_frames", 4096, type="integer", minimum=1, maximum=10000000,
          meaning="Frames per mini-batch (online_mu and gradient forms)."),
    Param("epochs", 20, type="integer", minimum=1, maximum=10000, meaning="Maximum epochs of the mini-batch forms."),
    Param("inner_iterations", 10, type="integer", minimum=1, maximum=1000,
          meaning="MU iterations on each batch's activations."),
    Param("forget_factor", 0.5, type="number", exclusiveMinimum=0, maximum=1,
          meaning="Weight of past sufficient statistics in online MU (as scikit-learn's MiniBatchNMF)."),
    Param("optimizer", "adam", type="string", enum=["adam", "sgd"],
          meaning="Optimizer of the gradient form (sgd uses momentum)."),
    Param("learning_rate", 1.0, type="number", exclusiveMinimum=0,
          meaning="Learning rate of the gradient form (Adam or SGD on log W, so a relative step size)."),
    Param("templates_from", None, type=["string", "null"],
          meaning="Supervised models: the dataset whose isolated notes the templates are learned from (e.g. "
                  "MAPS' ISOL for a MAESTRO test); null = the model's own dataset. Its features must be the "
                  "same feature set."),
    Param("teacher", None, type=["string", "null"],
          meaning="A model of this config (e.g. `basic_pitch`) whose transcription of the training audio "
                  "replaces the training MIDI (semi-supervised models: the masks): its notes, decoded as its "
                  "validation split chose, are the targets; validation and test keep their MIDI. null = learn "
                  "from the MIDI."),
    Param("templates_per_key", 1, type="integer", minimum=1, maximum=16,
          meaning="Supervised and semi-supervised nmf, nmfd: templates per key (e.g. one for each piano and "
                  "dynamic a dictionary must serve); a key's activation is the sum of its templates'. "
                  "Supervised: a rank-P fit of the key's isolated frames."),
    Param("dictionary_start", "random", type="string", enum=["random", "isolated"],
          meaning="Semi-supervised models: the dictionary training starts from, `random` or `isolated`: the "
                  "supervised templates of the dataset's isolated notes (same templates_per_key and "
                  "attack_frames), then refined on the pieces (as Wu, Marmoret & Cohen, SMC 2022, start their "
                  "convolutive templates)."),
    Param("attack_frames", 0, type="integer", minimum=0, maximum=16,
          meaning="Supervised and semi-supervised nmf, nmfd: with A > 0, one attack template per key, active "
                  "only in the first A frames of each note (supervised: learned from those frames of the "
                  "isolated notes, the other templates from the rest); the model then outputs its attack "
                  "activations as onsets, for the decoder's `attack` onset rule. 0 = none."),
    Param("validation_note_f_every", 1, type="integer", minimum=0,
          meaning="Mini-batch forms: every this many epochs, log in loss.csv (column validation_note_f) the "
                  "validation note F of the current dictionary (threshold decoder, best of thresholds "
                  "0.05/0.1/0.2/0.3, 50 ms onsets); 0 = never. Logged only: early stopping watches the "
                  "validation loss."),
    Param("momentum", 0.9, type="number", minimum=0, maximum=1, meaning="Momentum of SGD."),
    Param("lr_decay", 0.95, type="number", exclusiveMinimum=0, maximum=1,
          meaning="Learning rate multiplied by this after every epoch."),
    Param("patience", 3, type="integer", minimum=0, maximum=1000,
          meaning="Early stopping after this many epochs without a lower validation loss (0: never)."),
    Param("seed", 0, type="integer", minimum=0,
          meaning="Seed of initialisation and batch order; the same seed repeats the run."),
    Param("device", "auto", type="string", enum=["auto", "cpu", "cuda"],
          meaning="Torch device; `auto` takes CUDA when the job has a GPU."),
)


class LowRankFamily(Family):
    """What NMF, NMFD and NTD share: supervision, forms, training, transcription."""

    schema_definition = "model_lowrank"
    params = PARAMS
    has_dictionary = True
    numerics = nmf
    #: every track is cut into segments of ``segment_frames`` (NTD's tensor)
    segmented = False
    #: mini-batches are segments of ``segment_frames`` rather than loose frames
    segment_batches = False

    # --- the family contract ------------------------------------------------------------
    def skip(self, spec):
        if spec["supervision"] == "supervised" and spec["form"] != "full_batch":
            return True, ("model key 'form' must be 'full_batch' for supervision 'supervised' "
                          "(templates are learned key by key from the isolated notes)")
        if spec["templates_from"] is not None and spec["supervision"] != "supervised":
            return True, "model key 'templates_from' is for supervision 'supervised' (templates from isolated notes)"
        if spec["teacher"] is not None and spec["supervision"] != "semi_supervised":
            return True, ("model key 'teacher' is for supervision 'semi_supervised' (the teacher's notes "
                          "are the masks)")
        if spec["supervision"] == "unsupervised" and (spec["templates_per_key"] > 1 or spec["attack_frames"]):
            return True, ("model keys 'templates_per_key' and 'attack_frames' are for supervision 'supervised' "
                          "or 'semi_supervised' (templates given to keys)")
        if spec["dictionary_start"] == "isolated" and spec["supervision"] != "semi_supervised":
            return True, "model key 'dictionary_start: isolated' is for supervision 'semi_supervised'"
        if not self.segmented and (spec["transcribe_time_rank"] or spec["transcribe_segment_rank"]):
            return True, "model keys 'transcribe_time_rank' and 'transcribe_segment_rank' are for family 'ntd'"
        return False, ""

    def memory_grows_with_data(self, spec):
        return spec["form"] == "full_batch"

    def training_data(self, spec):
        return "isolated" if spec["supervision"] == "supervised" else "pieces"

    def learns_from_targets(self, spec):
        return spec["supervision"] == "semi_supervised"

    def options(self, spec) -> dict:
        """Keyword options of the numerics' initialisers."""
        return {"time_extent": spec["time_extent"], "time_rank": spec["time_rank"],
                "segment_rank": spec["segment_rank"]}

    def transcribe_options(self, spec) -> dict:
        """``options`` for a track's activations with W fixed: NTD may free its segment
        and time factors there (a test piece has more segments than training's rank)."""
        ranks = {name: spec[f"transcribe_{name}"] for name in ("time_rank", "segment_rank")}
        return {**self.options(spec), **{name: rank for name, rank in ranks.items() if rank is not None}}

    def as_data(self, V: torch.Tensor, spec) -> torch.Tensor:
        """A track's F x N features as the numerics take them."""
        return ntd.segment(V, spec["segment_frames"]) if self.segmented else V

    def n_templates(self, spec) -> int:
        return spec["rank"] if spec["supervision"] == "unsupervised" else len(template_layout(spec)[0])

    def mask_of(self, spec):
        """Loader targets (roll, and attack rows with ``attack_frames``; keys on axis -2)
        -> the activations' mask, one row per template; None without supervision masks."""
        if spec["supervision"] != "semi_supervised":
            return None
        P = spec["templates_per_key"]

        def mask(targets):  # each key's roll for its P templates, then the attack rows (if any)
            return np.concatenate([np.repeat(targets[..., :N_KEYS, :], P, axis=-2), targets[..., N_KEYS:, :]], axis=-2)
        return mask

    def fit(self, spec, run, log=print):
        if spec["supervision"] == "supervised":
            log(f"learning {self.n_templates(spec)} templates (beta={spec['beta']}, {spec['train_iterations']} iterations) "
                f"on {run.device}")
            W, losses, extra = self._fit_supervised(spec, run, log)
        elif spec["form"] == "full_batch":
            W, losses, extra = self._fit_full_batch(spec, run, log)
        else:
            W, losses, extra = self._fit_epochs(spec, run, log)
        keys = self.assign_template_keys(spec, W, run.index_path)
        attack = template_layout(spec)[1] if spec["supervision"] != "unsupervised" else np.zeros(len(keys))
        W, keys, attack = normalized_templates(W, keys, attack)
        info = {"n_parameters": int(W.size), "n_templates_with_key": int((keys >= 0).sum()), **extra}
        arrays = {"W": W, "template_keys": keys, **({"template_attack": attack} if spec["attack_frames"] else {})}
        return Trained(arrays, losses, info)

    def start_dictionary(self, spec, run, n_bins, scale, like, log):
        """The dictionary training starts from: random entries of size ``scale``, or, with
        ``dictionary_start: isolated``, the supervised templates of the isolated notes
        (same layout), scaled to the same mean."""
        W0 = self.numerics.init_dictionary(n_bins, self.n_templates(spec), scale, generator(spec["seed"]), like,
                                  **self.options(spec))
        if spec["dictionary_start"] == "random":
            return W0
        log("starting from the templates of the isolated notes")
        W, _, _ = self._fit_supervised(spec, run, log)
        W = torch.from_numpy(W).to(W0)
        return W * (W0.mean() / W.mean())

    def learn_key_template(self, V, spec, seed, rank=1):
        """One key's ``rank`` templates (bins x rank) from its isolated frames V (bins x
        n), and the loss curve: NMF from a random start (scikit-learn's init='random')."""
        w, _, losses = nmf.nmf(V, rank, spec["beta"], spec["train_iterations"], seed=seed)
        return w, losses

    def _fit_supervised(self, spec, run, log):
        index = read_index(run.index_path, "isolated")
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
            tracks("sustain"), lambda V, seed: self.learn_key_template(V, spec, seed, P), spec["seed"], run.device, log)
        if A:
            log(f"attack templates from the first {A} frames of each note")
            W_attack, attack_curves = nmf.learn_supervised_templates(
                tracks("attack"), lambda V, seed: self.learn_key_template(V, spec, seed), spec["seed"], run.device, log)
            W, curves = np.concatenate([W, W_attack], axis=-1), curves + attack_curves
        losses = pd.DataFrame([{"template": k, "iteration": i, "loss": loss}
                               for k, curve in enumerate(curves) for i, loss in enumerate(curve)])
        return W, losses, {"n_training_frames": int(sum(len(c) for c in curves))}

    def _training_tensors(self, spec, run):
        """All training frames at once: V (F x N, or S x F x T when segmented) and the roll mask."""
        tracks = select_training_tracks(read_index(run.index_path), run.train_hours)
        if tracks.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'train' tracks")
        pieces = [load_track(row) for row in tracks.itertuples()]
        # each track as the numerics take it: bins x frames, or segments x bins x frames (NTD)
        V = torch.cat([self.as_data(torch.from_numpy(np.array(f, dtype=np.float32)), spec) for f, _ in pieces],
                      dim=0 if self.segmented else 1)
        mask_of = self.mask_of(spec)
        if mask_of is None:
            return V.to(run.device), None
        targets = [np.asarray(roll, dtype=np.float32) for _, roll in pieces]  # laid out like the features
        if spec["attack_frames"]:
            targets = [np.concatenate([roll, track_attack_rows(row, spec["attack_frames"], run.index_path)])
                       for roll, row in zip(targets, tracks.itertuples())]
        targets = torch.cat([self.as_data(torch.from_numpy(t), spec) for t in targets], dim=0 if self.segmented else 1)
        return V.to(run.device), torch.from_numpy(mask_of(targets.numpy()).astype(np.float32)).to(run.device)

    def _fit_full_batch(self, spec, run, log):
        V, mask = self._training_tensors(spec, run)
        K = self.n_templates(spec)
        W0 = self.start_dictionary(spec, run, V.shape[-2], float((V.mean() / K).sqrt()), V, log)
        log(f"full-batch {self.name}: {tuple(V.shape)} data, {K} templates, on {run.device}")
        with torch.no_grad():
            W, _, losses = fit_full_batch(self.numerics, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"],
                                          tol=spec["tol"], l1=spec["sparsity"], mask=mask, seed=spec["seed"],
                                          options=self.options(spec), log=log)
        frames = V.numel() // V.shape[-2]
        table = pd.DataFrame({"iteration": np.arange(len(losses)), "split": "train",
                              "loss": np.asarray(losses) / frames})
        return W.cpu().numpy(), table, {"n_training_frames": frames, "iterations": len(losses) - 1}

    def _fit_epochs(self, spec, run, log):
        learner, n_frames = self._learner(spec, run, log)
        state = fit_epochs(learner, epochs=spec["epochs"], patience=spec["patience"],
                           checkpoint_path=run.checkpoint_path, device=run.device, log=log,
                           fingerprint=fingerprint(spec, run.train_hours, n_frames))
        extra = {"n_training_frames": n_frames, "epochs": state["epoch"], "best_epoch": state["best_epoch"],
                 "stopped_early": state["stopped_early"], "train_seconds": state["seconds"],
                 "train_cpu_seconds": state["cpu_seconds"]}
        return state["best"].cpu().numpy(), pd.DataFrame(state["history"]), extra

    def _learner(self, spec, run, log):
        segment_frames = spec["segment_frames"] if self.segment_batches or self.segmented else None
        attack_frames = spec["attack_frames"] if spec["supervision"] == "semi_supervised" else 0
        batches = FrameBatches(run.index_path, "train", spec["batch_frames"], spec["seed"],
                               segment_frames=segment_frames, shuffle=True, train_hours=run.train_hours,
                               attack_frames=attack_frames)
        try:
            validation = FrameBatches(run.index_path, "validation", spec["batch_frames"], spec["seed"],
                                      segment_frames=segment_frames, shuffle=False, attack_frames=attack_frames)
        except LowrankAmtError:
            validation = None
            log("no validation tracks: early stopping watches the training loss")
        first, _ = next(iter(batches.epoch(0)))
        K = self.n_templates(spec)
        W0 = self.start_dictionary(spec, run, batches.n_bins, float(np.sqrt(first.mean() / K)),
                                   torch.zeros((), device=run.device), log)
        if spec["form"] == "online_mu":
            updater = OnlineMU(W0, beta=spec["beta"], forget_factor=spec["forget_factor"],
                               total_frames=batches.n_frames)
        else:
            updater = GradientStep(W0, beta=spec["beta"], optimizer=spec["optimizer"],
                                   learning_rate=spec["learning_rate"], momentum=spec["momentum"],
                                   lr_decay=spec["lr_decay"])
        log(f"{spec['form']} {self.name}: {batches.n_frames} training frames, {K} templates, on {run.device}")
        score = self._scorer(spec, run, validation, log)
        learner = DictionaryLearner(self.numerics, updater, batches, beta=spec["beta"],
                                    inner_iterations=spec["inner_iterations"], l1=spec["sparsity"],
                                    mask_of=self.mask_of(spec), seed=spec["seed"],
                                    device=run.device, options=self.options(spec), validation_batches=validation,
                                    validation_score=score, score_every=max(1, spec["validation_note_f_every"]))
        return learner, batches.n_frames

    def _scorer(self, spec, run, validation_batches, log):
        """W (a tensor, as training holds it) -> ``validation_note_f`` of the model that
        training would save from it (templates given keys, normalized, dead ones
        dropped); None when the spec or the data ask for no score."""
        if validation_batches is None or not spec["validation_note_f_every"]:
            return None

        def transcriber_of(W):
            W = W.cpu().numpy()
            W, keys = normalized_templates(W, self.assign_template_keys(spec, W, run.index_path))
            return lambda features: track_activations(self, features, W, keys, spec, run.device)["note"]
        return note_f_scorer(run.index_path, transcriber_of, log)

    def assign_template_keys(self, spec, W: np.ndarray, index_path) -> np.ndarray:
        """Key (0..87, -1 for none) of each template: the layout's for per-key templates,
        the estimated pitch for unsupervised ones."""
        if spec["supervision"] != "unsupervised":
            return template_layout(spec)[0]
        from ..pitch import estimate_template_pitches
        frequencies = bin_frequencies(cache_params(index_path))
        return template_keys(estimate_template_pitches(self.numerics.spectral_templates(W), frequencies))

    def transcriber(self, arrays, spec, device):
        W, keys, attack = arrays["W"], arrays["template_keys"], arrays.get("template_attack")
        return lambda features: track_activations(self, features, W, keys, spec, device, attack)

    def steer(self, arrays, spec, steering):
        keep = steering.restrict_templates(arrays["template_keys"])
        if not keep.any():
            raise LowrankAmtError("the model has no template for any of the allowed keys")
        return {**arrays, **{name: arrays[name][keep] for name in ("template_keys", "template_attack") if name in arrays},
                "W": arrays["W"][..., keep]}

    def adapt(self, arrays, spec, features, roll, device, iterations):
        """``iterations`` full-batch MU steps on the dictionary from the trained one (the
        prior: templates move only as far as these few steps take them). With a roll, each
        template is active only where its key sounds, and templates of keys that never
        sound keep their trained values; without one (adapting on the recording to be
        transcribed), every template moves."""
        if self.segmented:
            raise LowrankAmtError(f"family '{self.name}' cannot adapt its dictionary (a Tucker core would have "
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
            W, _, _ = fit_full_batch(self.numerics, V, W0.clone(), beta=spec["beta"], n_iter=iterations, l1=spec["sparsity"],
                                     mask=mask, seed=spec["seed"], options=self.options(spec))
        W = W.cpu().numpy()
        W[..., ~heard] = arrays["W"][..., ~heard]
        totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
        return {**arrays, "W": (W / np.maximum(totals, 1e-12)).astype(np.float32)}

    def dictionary(self, arrays, spec):
        templates = self.numerics.spectral_templates(np.asarray(arrays["W"], dtype=float))
        labels = np.full(templates.shape[1], np.nan)
        if spec["supervision"] != "unsupervised":  # templates are labelled by their key
            labels = MIDI_MIN + np.asarray(arrays["template_keys"], dtype=float)
        return templates, labels


def track_attack_rows(row, attack_frames: int, index_path) -> np.ndarray:
    """``loader.attack_rows`` of one track of a feature index (a row with its onsets)."""
    if not getattr(row, "onsets_path", None):
        raise LowrankAmtError(f"feature index {index_path} has no onset targets for track "
                              f"{row.track_id}; extract the features again")
    return attack_rows(np.load(row.onsets_path), attack_frames)


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


class NMF(LowRankFamily):
    name = "nmf"
    description = "NMF, V ~ W H"
    numerics = nmf


class NMFD(LowRankFamily):
    name = "nmfd"
    description = "convolutive NMF: templates of time_extent frames"
    numerics = nmfd
    segment_batches = True

    def learn_key_template(self, V, spec, seed, rank=1):
        """A convolutive fit (T x bins x rank) from the family's start."""
        W0 = self.numerics.init_dictionary(V.shape[0], rank, float(V.mean().sqrt()), generator(seed), V, **self.options(spec))
        W, _, losses = fit_full_batch(self.numerics, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"], seed=seed)
        return W, losses


class NTD(LowRankFamily):
    name = "ntd"
    description = "nonnegative Tucker decomposition of the spectrogram cut into segments"
    numerics = ntd
    segmented = True

    # semi-supervised: the roll penalizes activations outside it (factorization/ntd.py)

    def skip(self, spec):
        if spec["attack_frames"]:
            return True, ("model key 'attack_frames' is for families 'nmf' and 'nmfd' (NTD's temporal "
                          "patterns P model a note's attack)")
        return super().skip(spec)
