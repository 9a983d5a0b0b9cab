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

``LowRankFamily`` holds what the three share, by composition: its ``numerics`` (a
module of ``factorization/``, see ``factorization/training.py``), which training
receives; the spec's supervision strategy (``supervision.py``), which it asks rather
than testing the name; the training functions of ``lowrank_fit.py``. A family supplies
its numerics and data layout. A variant (e.g. a penalty on W) gives a family other
numerics: an object that changes one function of a module's.
"""

from __future__ import annotations

import numpy as np
import torch

from ..constants import MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from ..factorization import nmf, nmfd, ntd
from ..factorization.activations import template_keys, track_activations
from ..factorization.core import generator
from ..factorization.training import fit_full_batch
from ..instruments import CLASSES, index_classes
from ..learning.augment import augmentation
from ..param import Param
from ..signal.feature_cache import cache_params
from ..signal.spectrogram import bin_frequencies
from . import lowrank_fit
from .base import Family
from .lowrank_fit import template_layout
from .schema import AUGMENT, DEVICE, TEACHER
from .supervision import SUPERVISIONS, Supervision

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
    TEACHER,
    AUGMENT,
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
    Param("instrument_templates", False, type="boolean",
          meaning="Supervised and semi-supervised nmf, nmfd: templates per instrument class of the dataset and "
                  "key (a note's class: the General MIDI family of its program, `instruments.py`); supervised: "
                  "each class's from its own isolated notes; semi-supervised: each active only where its class "
                  "plays its key. Transcription then names each note's instrument (one MIDI track per class) and "
                  "separates the mixture into one stem per class (soft masks from each class's part of the "
                  "reconstruction, `separation.py`)."),
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
    DEVICE,
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
    def supervision(self, spec) -> Supervision:
        return SUPERVISIONS[spec["supervision"]]

    def skip(self, spec):
        why = self.supervision(spec).refuses(spec)
        if why:
            return True, why
        if spec["instrument_templates"] and (not self.supervision(spec).keyed or spec["attack_frames"]
                                             or self.segmented):
            return True, ("model key 'instrument_templates' is for supervision 'supervised' or 'semi_supervised' of "
                          "families 'nmf' and 'nmfd', without attack_frames")
        if augmentation(spec["augment"]) is not None and spec["form"] == "full_batch":
            return True, "model key 'augment' is for the mini-batch forms ('online_mu', 'gradient'), which read batches"
        if not self.segmented and (spec["transcribe_time_rank"] or spec["transcribe_segment_rank"]):
            return True, "model keys 'transcribe_time_rank' and 'transcribe_segment_rank' are for family 'ntd'"
        return False, ""

    #: The gradient form's Adam steps amplify the matrix products' rounding, which is the
    #: CPU's: MKL takes AVX-512 kernels on Intel and others on AMD whatever torch's own are
    #: pinned to (bench/kernel_hashes.py). Its default-study rows moved by up to 0.005 on
    #: an Intel Xeon; the other forms' rows reproduced to the printed digits.
    gradient_cpu_tolerance = 0.02

    def cpu_tolerance_of(self, spec):
        return self.gradient_cpu_tolerance if spec.get("form") == "gradient" else self.cpu_tolerance

    def memory_grows_with_data(self, spec):
        return spec["form"] == "full_batch"

    def training_data(self, spec):
        return self.supervision(spec).training_data

    def learns_from_targets(self, spec):
        return self.supervision(spec).masks

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

    def layout(self, spec, index_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(key, is attack, class) of each per-key template: ``template_layout``, and with
        ``instrument_templates`` that layout once per class of the dataset (class-major;
        a class is an index of ``instruments.CLASSES``)."""
        keys, attack = template_layout(spec)
        if not spec["instrument_templates"]:
            return keys, attack, np.zeros(len(keys), dtype=np.int64)
        classes = [CLASSES.index(name) for name in index_classes(index_path)]
        return (np.tile(keys, len(classes)), np.tile(attack, len(classes)),
                np.repeat(np.array(classes, dtype=np.int64), len(keys)))

    def n_templates(self, spec, index_path=None) -> int:
        return len(self.layout(spec, index_path)[0]) if self.supervision(spec).keyed else spec["rank"]

    def mask_of(self, spec):
        """Loader targets (roll, and attack rows with ``attack_frames``; keys on axis -2)
        -> the activations' mask, one row per template; None without supervision masks.
        Instrument templates read each class's roll (``class_roll``)."""
        if not self.supervision(spec).masks:
            return None
        P = spec["templates_per_key"]
        if spec.get("instrument_templates"):
            return lambda targets: np.repeat(targets, P, axis=-2)

        def mask(targets):  # each key's roll for its P templates, then the attack rows (if any)
            return np.concatenate([np.repeat(targets[..., :N_KEYS, :], P, axis=-2), targets[..., N_KEYS:, :]], axis=-2)
        return mask

    def fit(self, spec, run, log=print):
        return lowrank_fit.fit(self, spec, run, log)

    def learn_key_template(self, V, spec, seed, rank=1):
        """One key's ``rank`` templates (bins x rank) from its isolated frames V (bins x
        n), and the loss curve: NMF from a random start (scikit-learn's init='random')."""
        w, _, losses = nmf.nmf(V, rank, spec["beta"], spec["train_iterations"], seed=seed)
        return w, losses

    def assign_template_keys(self, spec, W: np.ndarray, index_path) -> np.ndarray:
        """Key (0..87, -1 for none) of each template: the layout's for per-key templates,
        the estimated pitch for unsupervised ones."""
        if self.supervision(spec).keyed:
            return self.layout(spec, index_path)[0]
        from ..signal.pitch import estimate_template_pitches
        frequencies = bin_frequencies(cache_params(index_path))
        return template_keys(estimate_template_pitches(self.numerics.spectral_templates(W), frequencies))

    def transcriber(self, arrays, spec, device):
        W, keys, attack = arrays["W"], arrays["template_keys"], arrays.get("template_attack")
        classes = arrays.get("template_classes")
        return lambda features: track_activations(self, features, W, keys, spec, device, attack, classes)

    def separator(self, arrays, spec, device):
        if "template_classes" not in arrays:
            return None
        from ..evaluation.separation import class_reconstructions, separate
        return lambda features, mixture, sample_rate, hop, bin_hz: separate(
            class_reconstructions(self, arrays, spec, features, device), mixture, sample_rate, hop, bin_hz)

    def steer(self, arrays, spec, steering):
        keep = steering.restrict_templates(arrays["template_keys"])
        if not keep.any():
            raise LowrankAmtError("the model has no template for any of the allowed keys")
        return {**arrays, **{name: arrays[name][keep] for name in ("template_keys", "template_attack", "template_classes")
                           if name in arrays},
                "W": arrays["W"][..., keep]}

    def adapt(self, arrays, spec, features, roll, device, iterations):
        return lowrank_fit.adapt_dictionary(self, arrays, spec, features, roll, device, iterations)

    def dictionary(self, arrays, spec):
        templates = self.numerics.spectral_templates(np.asarray(arrays["W"], dtype=float))
        labels = np.full(templates.shape[1], np.nan)
        if self.supervision(spec).keyed:  # templates are labelled by their key
            labels = MIDI_MIN + np.asarray(arrays["template_keys"], dtype=float)
        return templates, labels


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
