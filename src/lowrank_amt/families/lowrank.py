"""The low-rank families (NMF, NMFD, NTD): a dictionary of spectral templates W, and
activations estimated by multiplicative updates with W fixed.

A spec names a ``supervision`` (supervised: one template per key from the isolated
notes; semi_supervised: 88 templates learned on the training pieces with activations
confined to their piano roll; unsupervised: ``rank`` free templates, each given a pitch
afterwards) and a training ``form`` (full_batch | online_mu | gradient; supervised
models are always learned full-batch). The mini-batch forms log, every
``validation_note_f_every`` epochs (0: never), the validation note F of the dictionary
at that epoch (``validation_note_f``).

A model's arrays: ``W`` (templates on the last axis, each of unit sum; templates that
training left dead are dropped) and ``template_keys`` (the piano key 0..87 of each
template, -1 for none). Transcription sums each key's template activations.

``LowRankFamily`` holds everything the three share; a family supplies its numerics
(``numerics``: a module of ``factorization/``, see ``factorization/training.py``) and
its data layout. A variant (e.g. a penalty on W) subclasses a family and overrides one
numerics method.
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
from ..loader import FrameBatches, select_training_tracks
from ..validation import note_f_scorer
from .base import Family, Trained

# learning_rate: Adam's steps on log W are relative (at most about lr per step); at 0.1,
# a small study's few batches per epoch leave unsupervised templates near their random start.
DEFAULTS = {
    "supervision": "supervised", "form": "full_batch", "beta": 1.0,
    "train_iterations": 100, "transcribe_iterations": 100, "tol": 1e-4, "sparsity": 0.0,
    "seed": 0, "device": "auto", "rank": 88, "time_extent": 8, "segment_frames": 32,
    "time_rank": 8, "segment_rank": 16, "batch_frames": 4096, "epochs": 20,
    "inner_iterations": 10, "forget_factor": 0.5, "optimizer": "adam", "learning_rate": 1.0,
    "momentum": 0.9, "lr_decay": 0.95, "patience": 3, "validation_note_f_every": 1, "templates_from": None,
    "teacher": None,
}
CHOICES = {"supervision": ("supervised", "semi_supervised", "unsupervised"),
           "form": ("full_batch", "online_mu", "gradient"), "optimizer": ("adam", "sgd"),
           "device": ("auto", "cpu", "cuda")}


class LowRankFamily(Family):
    """What NMF, NMFD and NTD share: supervision, forms, training, transcription."""

    schema_definition = "model_lowrank"
    defaults = DEFAULTS
    choices = CHOICES
    has_dictionary = True
    numerics = nmf
    #: every track is cut into segments of ``segment_frames`` (NTD's tensor)
    segmented = False
    #: mini-batches are segments of ``segment_frames`` rather than loose frames
    segment_batches = False

    # --- numerics (the interface factorization/training.py drives) ---------------------
    def init_dictionary(self, n_bins, rank, scale, gen, like, **options):
        return self.numerics.init_dictionary(n_bins, rank, scale, gen, like, **options)

    def init_activations(self, V, W, gen=None, mask=None, **options):
        return self.numerics.init_activations(V, W, gen, mask, **options)

    def reconstruct(self, W, activations):
        return self.numerics.reconstruct(W, activations)

    def loss(self, V, W, activations, beta):
        return self.numerics.loss(V, W, activations, beta)

    def activation_step(self, V, W, activations, beta, l1=0.0, mask=None, V_hat=None):
        return self.numerics.activation_step(V, W, activations, beta, l1, mask, V_hat=V_hat)

    def dictionary_terms(self, V, W, activations, beta, V_hat=None):
        return self.numerics.dictionary_terms(V, W, activations, beta, V_hat=V_hat)

    def key_activations(self, activations):
        return self.numerics.key_activations(activations)

    def spectral_templates(self, W: np.ndarray) -> np.ndarray:
        """W as bins x templates (for pitch estimation and interpretability)."""
        return self.numerics.spectral_templates(W)

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
        if spec["validation_note_f_every"] < 0:
            return True, f"model key 'validation_note_f_every' must be >= 0, got {spec['validation_note_f_every']}"
        return False, ""

    def training_data(self, spec):
        return "isolated" if spec["supervision"] == "supervised" else "pieces"

    def learns_from_targets(self, spec):
        return spec["supervision"] == "semi_supervised"

    def options(self, spec) -> dict:
        """Keyword options of the numerics' initialisers."""
        return {"time_extent": spec["time_extent"], "time_rank": spec["time_rank"],
                "segment_rank": spec["segment_rank"]}

    def as_data(self, V: torch.Tensor, spec) -> torch.Tensor:
        """A track's F x N features as the numerics take them."""
        return ntd.segment(V, spec["segment_frames"]) if self.segmented else V

    def n_templates(self, spec) -> int:
        return spec["rank"] if spec["supervision"] == "unsupervised" else N_KEYS

    def fit(self, spec, run, log=print):
        if spec["supervision"] == "supervised":
            log(f"learning 88 templates (beta={spec['beta']}, {spec['train_iterations']} iterations) on {run.device}")
            W, losses, extra = self._fit_supervised(spec, run, log)
        elif spec["form"] == "full_batch":
            W, losses, extra = self._fit_full_batch(spec, run, log)
        else:
            W, losses, extra = self._fit_epochs(spec, run, log)
        W, keys = normalized_templates(W, self.assign_template_keys(spec, W, run.index_path))
        info = {"n_parameters": int(W.size), "n_templates_with_key": int((keys >= 0).sum()), **extra}
        return Trained({"W": W, "template_keys": keys}, losses, info)

    def learn_key_template(self, V, spec, seed):
        """One key's template (bins) from its isolated frames V (bins x n), and the loss
        curve: rank-1 NMF from a random start (scikit-learn's init='random')."""
        w, _, losses = nmf.nmf(V, 1, spec["beta"], spec["train_iterations"], seed=seed)
        return w[:, 0], losses

    def _fit_supervised(self, spec, run, log):
        index = read_index(run.index_path, "isolated")
        if index.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'isolated' tracks to learn supervised templates from")
        W, curves = nmf.learn_supervised_templates(
            (load_track(r) for r in index.itertuples()), lambda V, seed: self.learn_key_template(V, spec, seed),
            spec["seed"], run.device, log)
        losses = pd.DataFrame([{"template": k, "iteration": i, "loss": loss}
                               for k, curve in enumerate(curves) for i, loss in enumerate(curve)])
        return W, losses, {"n_training_frames": int(sum(len(c) for c in curves))}

    def _training_tensors(self, spec, run):
        """All training frames at once: V (F x N, or S x F x T when segmented) and the roll mask."""
        tracks = select_training_tracks(read_index(run.index_path), run.train_hours)
        if tracks.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'train' tracks")
        pieces = [load_track(row) for row in tracks.itertuples()]
        if self.segmented:
            return torch.cat([self.as_data(torch.from_numpy(np.array(f, dtype=np.float32)).to(run.device), spec)
                              for f, _ in pieces]), None
        V = torch.from_numpy(np.concatenate([np.asarray(f, dtype=np.float32) for f, _ in pieces], axis=1))
        mask = None
        if spec["supervision"] == "semi_supervised":
            mask = torch.from_numpy(np.concatenate([np.asarray(r, dtype=np.float32) for _, r in pieces], axis=1))
            mask = mask.to(run.device)
        return V.to(run.device), mask

    def _fit_full_batch(self, spec, run, log):
        V, mask = self._training_tensors(spec, run)
        K = self.n_templates(spec)
        W0 = self.init_dictionary(V.shape[-2], K, float((V.mean() / K).sqrt()), generator(spec["seed"]), V,
                                  **self.options(spec))
        log(f"full-batch {self.name}: {tuple(V.shape)} data, {K} templates, on {run.device}")
        with torch.no_grad():
            W, _, losses = fit_full_batch(self, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"],
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
        batches = FrameBatches(run.index_path, "train", spec["batch_frames"], spec["seed"],
                               segment_frames=segment_frames, shuffle=True, train_hours=run.train_hours)
        try:
            validation = FrameBatches(run.index_path, "validation", spec["batch_frames"], spec["seed"],
                                      segment_frames=segment_frames, shuffle=False)
        except LowrankAmtError:
            validation = None
            log("no validation tracks: early stopping watches the training loss")
        first, _ = next(iter(batches.epoch(0)))
        K = self.n_templates(spec)
        W0 = self.init_dictionary(batches.n_bins, K, float(np.sqrt(first.mean() / K)), generator(spec["seed"]),
                                  torch.zeros((), device=run.device), **self.options(spec))
        if spec["form"] == "online_mu":
            updater = OnlineMU(W0, beta=spec["beta"], forget_factor=spec["forget_factor"],
                               total_frames=batches.n_frames)
        else:
            updater = GradientStep(W0, beta=spec["beta"], optimizer=spec["optimizer"],
                                   learning_rate=spec["learning_rate"], momentum=spec["momentum"],
                                   lr_decay=spec["lr_decay"])
        log(f"{spec['form']} {self.name}: {batches.n_frames} training frames, {K} templates, on {run.device}")
        score = self._scorer(spec, run, validation, log)
        learner = DictionaryLearner(self, updater, batches, beta=spec["beta"],
                                    inner_iterations=spec["inner_iterations"], l1=spec["sparsity"],
                                    masked=spec["supervision"] == "semi_supervised", seed=spec["seed"],
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
            return lambda features: track_activations(self, features, W, keys, spec, run.device)
        return note_f_scorer(run.index_path, transcriber_of, log)

    def assign_template_keys(self, spec, W: np.ndarray, index_path) -> np.ndarray:
        """Key (0..87, -1 for none) of each template: identity for 88 per-key templates,
        the estimated pitch for unsupervised ones."""
        if spec["supervision"] != "unsupervised":
            return np.arange(W.shape[-1])
        from ..pitch import estimate_template_pitches
        frequencies = bin_frequencies(cache_params(index_path))
        return template_keys(estimate_template_pitches(self.spectral_templates(W), frequencies))

    def transcriber(self, arrays, spec, device):
        W, keys = arrays["W"], arrays["template_keys"]

        return lambda features: {"note": track_activations(self, features, W, keys, spec, device)}

    def steer(self, arrays, spec, steering):
        keep = steering.restrict_templates(arrays["template_keys"])
        if not keep.any():
            raise LowrankAmtError("the model has no template for any of the allowed keys")
        return {**arrays, "W": arrays["W"][..., keep], "template_keys": arrays["template_keys"][keep]}

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
            W, _, _ = fit_full_batch(self, V, W0.clone(), beta=spec["beta"], n_iter=iterations, l1=spec["sparsity"],
                                     mask=mask, seed=spec["seed"], options=self.options(spec))
        W = W.cpu().numpy()
        W[..., ~heard] = arrays["W"][..., ~heard]
        totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
        return {**arrays, "W": (W / np.maximum(totals, 1e-12)).astype(np.float32)}

    def dictionary(self, arrays, spec):
        templates = self.spectral_templates(np.asarray(arrays["W"], dtype=float))
        labels = np.full(templates.shape[1], np.nan)
        if spec["supervision"] != "unsupervised":  # templates are labelled by their key
            labels = MIDI_MIN + np.asarray(arrays["template_keys"], dtype=float)
        return templates, labels


def normalized_templates(W: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Templates (last axis of W) scaled to unit sum; dead ones (a key never played in
    semi-supervised training leaves its template at the eps floor) are removed."""
    totals = W.reshape(-1, W.shape[-1]).sum(axis=0)
    alive = totals > 1e-6 * totals.max()
    return (W[..., alive] / totals[alive]).astype(np.float32), keys[alive]


class NMF(LowRankFamily):
    name = "nmf"
    description = "NMF, V ~ W H"
    numerics = nmf


class NMFD(LowRankFamily):
    name = "nmfd"
    description = "convolutive NMF: templates of time_extent frames"
    numerics = nmfd
    segment_batches = True

    def learn_key_template(self, V, spec, seed):
        """A convolutive rank-1 fit (T x bins) from the family's start."""
        W0 = self.init_dictionary(V.shape[0], 1, float(V.mean().sqrt()), generator(seed), V, **self.options(spec))
        W, _, losses = fit_full_batch(self, V, W0, beta=spec["beta"], n_iter=spec["train_iterations"], seed=seed)
        return W[..., 0], losses


class NTD(LowRankFamily):
    name = "ntd"
    description = "nonnegative Tucker decomposition of the spectrogram cut into segments"
    numerics = ntd
    segmented = True

    def skip(self, spec):
        if spec["supervision"] == "semi_supervised":
            return True, ("supervision 'semi_supervised' is not available for family 'ntd' "
                          "(its activations are a Tucker product, which a piano roll cannot mask)")
        return super().skip(spec)
