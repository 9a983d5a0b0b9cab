"""Pretrained Basic Pitch as a model family: nothing to train, transcription from the
audio (22050 Hz, its own 2 s windows, ``deep/basic_pitch.py``) at its own frame rate
(22050 / 256 Hz), and its own note creation as the decoder."""

from __future__ import annotations

import pandas as pd

from ..audio import load_audio
from .base import Family, Trained


class BasicPitch(Family):
    name = "basic_pitch"
    description = "pretrained Basic Pitch (ICASSP 2022, ONNX)"
    schema_definition = "model_basic_pitch"
    reads = "audio"
    decoder = "basic_pitch"

    @property
    def defaults(self):
        from ..deep.basic_pitch import DEFAULTS
        return DEFAULTS

    def training_data(self, spec):
        return None

    def fit(self, spec, run, log=print):
        """Record the pretrained model; ``train_seconds`` is null: its training cost is
        not measured here."""
        from ..deep.basic_pitch import N_PARAMETERS, _basic_pitch, versions
        _basic_pitch()  # a clear error now if the package is missing
        info = {"train_seconds": None, "train_cpu_seconds": None, "device": "none (pretrained)",
                "n_parameters": N_PARAMETERS, "pretrained": True, "epochs": 0, **versions()}
        return Trained({}, pd.DataFrame(columns=["epoch", "split", "loss"]), info)

    def transcriber(self, arrays, spec, device):
        from ..deep.basic_pitch import load_model, posteriorgrams
        from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
        model = load_model()

        def transcribe(audio_path) -> dict:
            outputs = posteriorgrams(load_audio(audio_path, AUDIO_SAMPLE_RATE), model)
            return {"note": outputs["note"].T, "onset": outputs["onset"].T,
                    "frame_rate": AUDIO_SAMPLE_RATE / FFT_HOP}
        return transcribe

    def device_label(self, device) -> str:
        return "cpu (onnxruntime)"

    def make_decoder(self, spec, decoding, evaluation):
        from ..deep.basic_pitch import NoteCreation
        return NoteCreation(spec, evaluation)
