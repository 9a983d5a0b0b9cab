"""Deep-unfolded NMF and NMFD as a model family (the model: ``factorization/unrolled_mu.py``).

The dictionary is the base family's supervised one (``base``: nmf or nmfd): learned from
the isolated notes of the training dataset exactly as a supervised model of that family
with the same ``beta``, ``train_iterations``, ``time_extent`` and ``seed`` (so it equals
that model's W). The unrolled layers and the two heads are then trained on the training
pieces, with the frame and onset targets (binary cross-entropy, as the network) plus
``reconstruction_weight`` times the reconstruction term, by the network's learner and the
shared epoch loop (Adam, early stopping on the validation loss, the best epoch kept, a
checkpoint every epoch, exact resume). ``steps_per_epoch`` makes an epoch that many batches
of random segments, so that training costs the same at any size (docs/hybrid.md).
``learn_bin_gains`` adds a gain per layer and frequency bin; ``learn_dictionary``
fine-tunes W as well, and interpretability then says how readable the templates stay.

A model's arrays: ``W`` and ``template_keys`` (as the low-rank families), the learned
layers and heads as ``weights/<name>``, and ``config`` (JSON).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import torch

from ..constants import MIDI_MIN, N_KEYS
from ..deep.harmonic_net import n_parameters, transcription_loss
from ..deep.learner import WEIGHTS, NetworkLearner
from ..errors import LowrankAmtError
from ..factorization.activations import class_outputs
from ..factorization.core import EPS
from ..factorization.unrolled_mu import UnrolledMU
from ..instruments import CLASSES, index_classes
from ..learning.augment import augmentation
from ..learning.epoch_scoring import note_f_scorer
from ..learning.epochs import fingerprint, fit_epochs
from ..learning.loader import FrameBatches
from ..param import Param
from ..signal.feature_cache import read_index
from .base import Family, Trained
from .schema import AUGMENT, DEVICE, STEPS_PER_EPOCH, TEACHER


def learns_dictionaries(spec) -> bool:
    """Whether the model learns its dictionary (one, or one per layer)."""
    return spec["learn_dictionary"] or spec["untie_layers"]


def learned_names(model: UnrolledMU) -> list[str]:
    """What ``model`` learns beyond W (its layers' and heads' parameters, optional parts
    included), each saved as weights/<name>."""
    return [name for name, _ in model.named_parameters() if name != "log_W"]


def class_row_of_templates(templates: dict, classes: list[str], device):
    """Each template's class row in ``classes`` (the feature index's classes, whose rolls
    the class loss reads), -1 for a class not among them; None without classes."""
    if not classes:
        return None
    row = {CLASSES.index(name): i for i, name in enumerate(classes)}
    rows = [row.get(int(c), -1) for c in templates["template_classes"]]
    return torch.tensor(rows, dtype=torch.long, device=device)


def training_loss(spec: dict, n_classes: int, class_rows):
    """The loss of a batch: the note and onset cross-entropies on the agnostic roll and the
    weighted reconstruction term; with ``class_rows`` (``class_row_of_templates``) the
    batch's targets are the class rolls (class-major, their union the agnostic roll) and
    the weighted class loss is added."""
    def loss(model, features, roll):
        H, reconstruction = model.template_outputs(features)
        by_class = roll
        if class_rows is not None:
            roll = roll.reshape(roll.shape[0], n_classes, N_KEYS, -1).amax(dim=1)
        note, onset = model.heads(H)
        total = transcription_loss(note, onset, roll, True) + spec["reconstruction_weight"] * reconstruction
        if class_rows is None:
            return total
        return total + spec["class_loss_weight"] * model.class_loss(H, by_class, class_rows)
    return loss


def new_model(numerics, templates: dict, spec: dict, floor: float) -> UnrolledMU:
    """The untrained layers on the base model's ``templates`` (every learned parameter at
    its neutral start), seeded by the spec; ``floor``: the features' mean level."""
    torch.manual_seed(spec["seed"])
    return UnrolledMU(numerics, torch.from_numpy(templates["W"]), templates["template_keys"], spec["beta"],
                      spec["layers"], floor=floor, learn_dictionary=spec["learn_dictionary"],
                      learn_bin_gains=spec["learn_bin_gains"], untie_layers=spec["untie_layers"],
                      adapt_recording=spec["adapt_recording"], adapt_smoothing=spec["adapt_smoothing"])


#: The family's model keys.
PARAMS = (
    Param("base", "nmf", type="string", enum=["nmf", "nmfd"],
          meaning="The low-rank family whose dictionary (its supervised model's, from the isolated notes) and "
                  "MU steps are unrolled."),
    Param("beta", 1.0, type="number", minimum=0, maximum=3,
          meaning="Beta of the beta-divergence of the MU steps and the reconstruction term."),
    Param("time_extent", 5, type="integer", minimum=1, maximum=200,
          meaning="Base nmfd: frames of time extent of each template."),
    Param("train_iterations", 100, type="integer", minimum=1, maximum=100000,
          meaning="MU iterations per template when learning the dictionary from the isolated notes."),
    Param("layers", 10, type="integer", minimum=0, maximum=1000,
          meaning="Unrolled MU layers (with every learned parameter at zero, this many plain MU iterations, to "
                  "float rounding)."),
    Param("learn_dictionary", False, type="boolean",
          meaning="Fine-tune the dictionary W with the layers (else W stays the isolated-note templates)."),
    Param("learn_bin_gains", False, type="boolean",
          meaning="Learn a gain per layer and frequency bin through which the layer sees the features and W: "
                  "MU for the divergence weighted per bin (which bins each layer trusts)."),
    Param("untie_layers", False, type="boolean",
          meaning="Each layer learns a dictionary of its own, started from the templates (deep NMF's untied "
                  "layers); every template stays its key's, each layer's interpretability is reported."),
    Param("adapt_recording", False, type="boolean",
          meaning="The layers also adapt to the recording they transcribe: a gain per frequency bin (an "
                  "equaliser, smoothed over adapt_smoothing bins), one per recording, updated by an MU step of "
                  "learned size in each layer (zero at the start: no adaptation)."),
    Param("adapt_smoothing", 36, type="integer", minimum=1, maximum=1000,
          meaning="Bins over which the recording's gain is smoothed (36: an octave of 3 bins per semitone)."),
    Param("instrument_templates", False, type="boolean",
          meaning="The base dictionary has templates per instrument class and key (the base supervised model's "
                  "instrument_templates): transcription names each note's instrument and separates stems from "
                  "the learned layers' activations; training reads the instrument-agnostic roll (and each class's with "
                  "class_loss_weight)."),
    Param("class_loss_weight", 0.0, type="number", minimum=0,
          meaning="With instrument_templates: weight of a cross-entropy on each class's key activations (the "
                  "class's templates summed per key, through the note head) against the class's own roll, beside "
                  "the agnostic loss, so that the layers learn which class sounds; 0: the class outputs are "
                  "inherited from the agnostic training."),
    Param("reconstruction_weight", 0.1, type="number", minimum=0,
          meaning="Weight of the reconstruction term (beta-divergence per entry relative to the features' "
                  "level) beside the note and onset cross-entropies."),
    Param("epochs", 20, type="integer", minimum=1, maximum=10000, meaning="Maximum training epochs."),
    Param("patience", 3, type="integer", minimum=1, maximum=1000,
          meaning="Stop after this many epochs without a lower validation loss; the best epoch's parameters are "
                  "kept."),
    STEPS_PER_EPOCH,
    Param("batch_segments", 16, type="integer", minimum=1, maximum=4096, meaning="Segments per mini-batch."),
    Param("segment_frames", 64, type="integer", minimum=2, maximum=10000, meaning="Frames per training segment."),
    Param("learning_rate", 0.01, type="number", exclusiveMinimum=0, meaning="Adam learning rate."),
    Param("seed", 0, type="integer", minimum=0,
          meaning="Seed of the dictionary's initialisation and of the batch order."),
    AUGMENT,
    DEVICE,
    TEACHER,
)


class Unrolled(Family):
    name = "unrolled"
    description = "deep-unfolded MU: learned MU layers on a dictionary of isolated-note templates"
    schema_definition = "model_unrolled"
    has_dictionary = True
    params = PARAMS

    def skip(self, spec):
        if spec["class_loss_weight"] > 0 and not spec["instrument_templates"]:
            return True, "model key 'class_loss_weight' needs 'instrument_templates: true' (templates per class)"
        if spec["untie_layers"] and spec["learn_dictionary"]:
            return True, ("model keys 'untie_layers' and 'learn_dictionary' exclude each other (untied layers "
                          "learn a dictionary each)")
        return False, ""

    def base(self, spec):
        """(the base low-rank family, the spec of its supervised model)."""
        from . import resolve
        return resolve({"family": spec["base"], "supervision": "supervised", "beta": spec["beta"],
                        "train_iterations": spec["train_iterations"], "time_extent": spec["time_extent"],
                        "seed": spec["seed"], "device": spec["device"],
                        "instrument_templates": spec.get("instrument_templates", False)})

    def fit(self, spec, run, log=print):
        validation = read_index(run.index_path, "validation")
        if validation.empty:
            raise LowrankAmtError(f"{run.index_path} has no 'validation' tracks for early stopping")
        base, base_spec = self.base(spec)
        log(f"dictionary: supervised {base.name} templates from the isolated notes")
        templates = base.fit(base_spec, dataclasses.replace(run, train_hours=None, checkpoint_path=None), log).arrays
        classes = index_classes(run.index_path) if spec["class_loss_weight"] > 0 else []
        batches = FrameBatches(run.index_path, "train", spec["batch_segments"] * spec["segment_frames"],
                               spec["seed"], segment_frames=spec["segment_frames"], shuffle=True,
                               train_hours=run.train_hours, max_batches=spec["steps_per_epoch"] or None,
                               augment=augmentation(spec["augment"]), target="class_roll" if classes else "roll")
        first, _ = next(iter(batches.epoch(0)))
        model = new_model(base.numerics, templates, spec, floor=float(first.mean())).to(run.device)
        class_rows = class_row_of_templates(templates, classes, run.device)
        loss = training_loss(spec, len(classes), class_rows)

        def transcriber_of(model):
            return lambda features: key_activations(model, features, run.device)[0].cpu().numpy()
        score = note_f_scorer(run.index_path, transcriber_of, log)
        learner = NetworkLearner(model, torch.optim.Adam(model.parameters(), lr=spec["learning_rate"]), batches,
                                 validation, run.device, loss=loss, score=score)
        log(f"unrolled {base.name}: {spec['layers']} layers, {n_parameters(model)} learned parameters, "
            f"{batches.n_frames} training frames, on {run.device}")
        state = fit_epochs(learner, epochs=spec["epochs"], patience=spec["patience"],
                           checkpoint_path=run.checkpoint_path, device=run.device, log=log,
                           fingerprint=fingerprint(spec, run.train_hours, batches.n_frames))
        model.load_state_dict(state["best"])
        log(f"best validation loss {state['best_loss']:.4f} at epoch {state['best_epoch']}")
        info = {"train_seconds": state["seconds"], "train_cpu_seconds": state["cpu_seconds"],
                "n_parameters": n_parameters(model) + (0 if learns_dictionaries(spec) else int(templates["W"].size)),
                "epochs": state["epoch"], "best_epoch": state["best_epoch"], "best_validation_loss": state["best_loss"],
                "stopped_early": state["stopped_early"], "n_training_frames": batches.n_frames}
        classes = {"template_classes": templates["template_classes"]} if "template_classes" in templates else {}
        return Trained({**self.arrays_of(model, spec), **classes}, pd.DataFrame(state["history"]), info)

    def arrays_of(self, model: UnrolledMU, spec) -> dict:
        with torch.no_grad():
            W = model.W.cpu().numpy().astype(np.float32)
        # untied layers: W is the last layer's dictionary, W_templates the one they change
        templates = {"W_templates": model.W_fixed.cpu().numpy()} if model.config["untie_layers"] else {}
        return {"W": W, "template_keys": model.template_keys.cpu().numpy(), **templates,
                **{WEIGHTS + name: getattr(model, name).detach().cpu().numpy() for name in learned_names(model)},
                "config": json.dumps({**model.config, "base": spec["base"]})}

    def load(self, arrays, spec, device) -> UnrolledMU:
        """The trained model of a model's arrays, in eval mode on ``device``."""
        config = json.loads(str(arrays["config"]))
        base, _ = self.base(spec)
        W = arrays.get("W_templates", arrays["W"])
        model = UnrolledMU(base.numerics, torch.from_numpy(np.asarray(W, dtype=np.float32)),
                           np.asarray(arrays["template_keys"]), config["beta"], config["layers"], config["floor"],
                           learn_bin_gains=config.get("learn_bin_gains", False),
                           untie_layers=config.get("untie_layers", False),
                           adapt_recording=config.get("adapt_recording", False),
                           adapt_smoothing=config.get("adapt_smoothing", 36))
        with torch.no_grad():
            for name in learned_names(model):
                getattr(model, name).copy_(torch.from_numpy(np.asarray(arrays[WEIGHTS + name])))
        return model.to(device).eval()

    def transcriber(self, arrays, spec, device):
        """A track's key activations (the learned layers' H summed per key, as every
        low-rank model's output) and its onset posteriorgram. The activations, not the
        note head's posteriorgram, are decoded: the head's per-key calibration is
        learned on the training pianos and does not carry over to an unheard one, while
        the activations keep the attack peaks the shared decoder places onsets on."""
        model = self.load(arrays, spec, device)
        classes = arrays.get("template_classes")

        @torch.no_grad()
        def transcribe(features, mean=None) -> dict:
            H_templates = template_activations(model, features, device, mean)
            H = model.key_activations(H_templates)
            outputs = {"note": H[0].cpu().numpy(), "onset": torch.sigmoid(model.heads_of_keys(H)[1])[0].cpu().numpy()}
            if classes is not None:
                outputs.update(class_outputs(H_templates[0], arrays["template_keys"], classes))
            return outputs
        return transcribe

    def separator(self, arrays, spec, device):
        if "template_classes" not in arrays:
            return None
        from ..evaluation.separation import class_parts, separate
        model, (base, _) = self.load(arrays, spec, device), self.base(spec)

        @torch.no_grad()
        def separate_track(features, mixture, sample_rate, hop, bin_hz):
            H = template_activations(model, features, device)[0]
            parts = class_parts(base.numerics, model.W, np.asarray(arrays["template_classes"]), H, features.shape[1])
            return separate(parts, mixture, sample_rate, hop, bin_hz)
        return separate_track

    def dictionary(self, arrays, spec):
        base, _ = self.base(spec)
        templates = base.numerics.spectral_templates(np.asarray(arrays["W"], dtype=float))
        return templates, MIDI_MIN + np.asarray(arrays["template_keys"], dtype=float)

    def layer_dictionaries(self, arrays, spec):
        if "W_templates" not in arrays:
            return None
        base, _ = self.base(spec)
        model = self.load(arrays, spec, "cpu")
        with torch.no_grad():
            return [base.numerics.spectral_templates(W.numpy().astype(float)) for W in model.layer_dictionaries()]

    def steer(self, arrays, spec, steering):
        keep = steering.restrict_templates(arrays["template_keys"])
        if not keep.any():
            raise LowrankAmtError("the model has no template for any of the allowed keys")
        per_template = [WEIGHTS + "log_scale", WEIGHTS + "log_W_change", "W_templates"]
        return {**arrays, "W": arrays["W"][..., keep], "template_keys": arrays["template_keys"][keep],
                **{name: np.asarray(arrays[name])[..., keep] for name in per_template if name in arrays},
                **({"template_classes": arrays["template_classes"][keep]} if "template_classes" in arrays else {})}

    def adapt(self, arrays, spec, features, roll, device, iterations):
        """The base family's adaptation of the dictionary; the learned layers are kept.
        Untied layers' dictionaries each take the change W takes, entry by entry."""
        base, base_spec = self.base(spec)
        adapted = base.adapt(arrays, base_spec, features, roll, device, iterations)
        if "W_templates" in arrays:
            ratio = np.maximum(adapted["W"], EPS) / np.maximum(arrays["W"], EPS)
            adapted["W_templates"] = (np.asarray(arrays["W_templates"]) * ratio).astype(np.float32)
        return {**arrays, **adapted}


@torch.no_grad()
def template_activations(model: UnrolledMU, features, device, mean=None) -> torch.Tensor:
    """A track's template activations through the learned layers, (1, K, frames) on
    ``device``; ``mean``: the features' mean their start assumes (default their own)."""
    return model.activations(torch.from_numpy(np.array(features, dtype=np.float32)).to(device)[None], mean=mean)


@torch.no_grad()
def key_activations(model: UnrolledMU, features, device) -> torch.Tensor:
    """A track's key activations through the learned layers, (1, 88, frames) on ``device``."""
    return model.key_activations(template_activations(model, features, device))
