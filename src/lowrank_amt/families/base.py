"""The contract every model family implements (in the spirit of benchopt's ``BaseSolver``).

A family is one object that owns the whole life of its models; callers (the stages,
the CLI, interpretability, the workflow) read only what it declares here and never
test a family's name. What a family declares:

* ``name``, ``description``; ``params``: its spec keys, each declared once with its
  default, allowed values and meaning (``param.Param``); ``defaults`` and ``choices``,
  the config schema's model definitions and config/README.md's tables come from them.
* ``skip(spec) -> (bool, reason)``: the combinations of several keys it refuses, and why
  (a single key's range is its ``Param``'s).
* ``training_data(spec)``: what a model learns from, which sets the training sizes
  the workflow runs it at: ``"pieces"`` (the training split, at every size of
  ``training_hours``), ``"isolated"`` (the isolated-note split, one size) or ``None``
  (pretrained, nothing to learn).
* ``learns_from_targets(spec)``: whether training on the pieces reads their note
  targets (MIDI, or a teacher's notes); training on recordings without MIDI is refused
  for a model that does, unless it has a ``teacher``.
* ``reads``: what its transcription reads, ``"features"`` (the feature cache, at its
  frame rate) or ``"audio"`` (mono recordings at its ``sample_rate``; its outputs then
  have one frame per ``hop_length`` samples). Callers never test it: they ask
  ``reads_features()``, ``input_of(row)`` (what to give the transcriber of a track) and
  ``frame_grid(features)`` and ``frame_rate(...)`` (the grid and rate of its outputs).
* ``is_pretrained()``: nothing to learn (its models are named, not trained);
  ``memory_grows_with_data(spec)``: whether training holds all the data at once;
  ``cpu_tolerance`` and ``cpu_tolerance_of(spec)``: how far its results may move between
  CPUs' float kernels (README, Reproducibility); ``score_threshold(params, peak)``: the
  level of its outputs that a decoded note needs, and their scale, for score-informed
  transcription.
* ``fit(spec, run, log) -> Trained``: train a model; ``run`` (``TrainingRun``) says on
  which data, with which checkpoint, on which device.
* ``transcriber(arrays, spec, device)``: a function from one track (features F x N, or
  mono audio) to its ``decoding.outputs.TrackOutputs``: ``note`` (88 x frames, pitch
  activations or a note posteriorgram) and what else the family predicts (``onset``,
  ``pedal``, ``by_class`` with ``classes``).
* ``decoder``: ``"grid"`` (the shared decoder of ``decode.py``, its parameters tuned
  on the validation split from the study's ``decoding`` grid) or a family's own note
  creation, given by ``make_decoder``.
* ``dictionary(arrays, spec)``: the spectral templates (bins x K) that interpretability
  reads and their key labels (MIDI, NaN where unlabelled), or None for a model without
  a dictionary; ``has_dictionary`` says which, before any model exists.
* ``separator(arrays, spec, device)``: for a model that names instruments from a
  dictionary, a function (features, mixture audio, sample rate, hop, bin frequencies)
  -> class -> stem audio (``separation.py``); None for the others.
* Saving and loading are the same for every family (``model_file.py``): ``fit`` returns the
  arrays that describe the model, written to ``model.npz`` beside the family name and spec.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from .. import param

if TYPE_CHECKING:  # the outputs' type, for the annotations alone
    from ..decoding.outputs import TrackOutputs


@dataclasses.dataclass
class TrainingRun:
    """What one training job works on: the feature cache (``index_path``), the first
    ``train_hours`` hours of its training split (None: all), the checkpoint file of the
    epoch loop (None: no checkpoints) and the torch device."""

    index_path: Path
    train_hours: float | None = None
    checkpoint_path: Path | None = None
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))


@dataclasses.dataclass
class Trained:
    """A trained model: ``arrays`` (saved in model.npz), the loss curve (``losses``:
    one row per iteration or per epoch and split) and what train.json records beyond the
    stage's timings (``info``: n_parameters, n_training_frames, epochs, ...; a key here
    overrides the stage's own)."""

    arrays: dict
    losses: pd.DataFrame
    info: dict


def pretrained(n_parameters: int, versions: dict) -> Trained:
    """What ``fit`` returns for a pretrained model: no arrays, no losses, and an info with
    its parameter count and package versions; its training cost is not measured here
    (``train_seconds`` null)."""
    info = {"train_seconds": None, "train_cpu_seconds": None, "device": "none (pretrained)",
            "n_parameters": int(n_parameters), "pretrained": True, "epochs": 0, **versions}
    return Trained({}, pd.DataFrame(columns=["epoch", "split", "loss"]), info)


class Family:
    """Base of every model family; see the module docstring for the contract."""

    name = ""
    description = ""
    #: the spec keys (``param.Param``), declared once; ``schema_definition`` names the
    #: config schema's definition generated from them (families sharing a table share one)
    params: tuple = ()
    schema_definition = ""
    reads = "features"
    sample_rate: int | None = None  # families that read audio: the rate they read it at
    hop_length: int | None = None   # and the samples per frame of their outputs
    decoder = "grid"
    has_dictionary = False
    cpu_tolerance = 0.0

    @property
    def defaults(self) -> dict:
        """Every spec key with its default value."""
        return param.defaults(self.params)

    @property
    def choices(self) -> dict:
        """The allowed values of keys that take one of a few names."""
        return {p.name: tuple(p.schema["enum"]) for p in self.params if "enum" in p.schema}

    def check_keys(self, spec: dict) -> str | None:
        """Why a key of a complete ``spec`` has a value its table refuses (None if none)."""
        refused = param.refusal(self.params, spec)
        return None if refused is None else f"model key '{refused[0]}': {refused[1]}"

    def reads_features(self) -> bool:
        """Whether its transcription reads the feature cache (else the recordings)."""
        return self.reads == "features"

    def input_of(self, row) -> np.ndarray:
        """What its transcriber reads of a track (a row of a feature index, with
        ``audio_path`` from the dataset's manifest for a family that reads audio)."""
        if self.reads_features():
            from ..signal.feature_cache import load_track
            return load_track(row)[0]
        if not hasattr(row, "audio_path"):
            from ..errors import LowrankAmtError
            raise LowrankAmtError(f"family '{self.name}' transcribes the audio: give the dataset's manifest")
        from ..signal.audio import load_audio
        return load_audio(row.audio_path, self.sample_rate)

    def frame_grid(self, features: dict | None) -> tuple[int, int]:
        """(sample rate, hop) of its outputs: its own for a family that reads audio, else
        those of the feature parameters it was trained on."""
        if self.reads_features():
            return int(features["sample_rate"]), int(features["hop_length"])
        return self.sample_rate, self.hop_length

    def frame_rate(self, feature_rate: float | None = None) -> float:
        """Frames per second of its outputs: the feature cache's (``feature_rate``) for a
        family that reads features, else its own grid's."""
        if self.reads_features():
            return feature_rate
        sample_rate, hop = self.frame_grid(None)
        return sample_rate / hop

    def is_pretrained(self) -> bool:
        return self.training_data(self.defaults) is None

    def memory_grows_with_data(self, spec: dict) -> bool:
        """Whether training holds all its data at once (full batch), so that its memory
        grows with the training set."""
        return False

    def cpu_tolerance_of(self, spec: dict) -> float:
        """``cpu_tolerance`` of a model of ``spec`` (any of its keys; a family may allow
        some of its forms more)."""
        return self.cpu_tolerance

    def score_threshold(self, params: dict, peak: float) -> tuple[float, float]:
        """(the output level a note needs, the scale of the outputs) under decoding
        ``params``: the grid decoder's threshold is relative to a track's ``peak``."""
        return params["threshold"], peak

    def skip(self, spec: dict) -> tuple[bool, str]:
        """(True, why) for a spec this family refuses; (False, "") otherwise."""
        return False, ""

    def training_data(self, spec: dict) -> str | None:
        return "pieces"

    def learns_from_targets(self, spec: dict) -> bool:
        """Whether training reads the pieces' note targets (an unsupervised model does
        not, so it may learn from recordings without MIDI)."""
        return True

    def fit(self, spec: dict, run: TrainingRun, log=print) -> Trained:
        raise NotImplementedError

    def transcriber(self, arrays: dict, spec: dict, device) -> Callable[..., TrackOutputs]:
        """A function from a track's features (or audio) to its outputs; one whose start
        depends on the features' mean may take ``mean=`` (live transcription passes the
        mean heard so far, a short window's own being a poor guide)."""
        raise NotImplementedError

    def dictionary(self, arrays: dict, spec: dict) -> tuple[np.ndarray, np.ndarray] | None:
        return None

    def layer_dictionaries(self, arrays: dict, spec: dict) -> list[np.ndarray] | None:
        """Spectral templates (bins x K) of each layer, for a model whose layers have
        dictionaries of their own (labelled as ``dictionary``'s); None otherwise."""
        return None

    def separator(self, arrays: dict, spec: dict, device):
        """A function separating a track into one stem per class, or None."""
        return None

    def steer(self, arrays: dict, spec: dict, steering) -> dict:
        """The arrays of the model restricted to ``steering.allowed`` keys, for a family
        that can restrict itself before transcribing (a dictionary's templates); the
        outputs of keys not allowed are zeroed for every family anyway."""
        return arrays

    def adapt(self, arrays: dict, spec: dict, features: np.ndarray, roll: np.ndarray | None, device,
              iterations: int) -> dict:
        """The arrays adapted to another instrument from its ``features`` (bins x frames)
        and, when known, its notes (``roll``, 88 x frames); a family without a dictionary
        refuses."""
        from ..errors import LowrankAmtError
        raise LowrankAmtError(f"family '{self.name}' has no dictionary to adapt")

    def device_label(self, device) -> str:
        """The device its transcription runs on, as activations.json records it."""
        return str(device)

    def make_decoder(self, spec: dict, decoding: dict, evaluation: dict):
        """The decoder of this family's outputs (``tuning.GridDecoder`` by default)."""
        from ..decoding.tuning import GridDecoder
        return GridDecoder(decoding, evaluation)
