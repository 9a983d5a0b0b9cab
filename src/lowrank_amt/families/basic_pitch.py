"""Pretrained Basic Pitch as a model family: nothing to train, transcription from the
audio (22050 Hz, its own 2 s windows, ``deep/basic_pitch_onnx.py``) at its own frame rate
(22050 / 256 Hz), and its own note creation as the decoder."""

from __future__ import annotations

from .base import Family, pretrained
from ..param import Param


class BasicPitch(Family):
    name = "basic_pitch"
    description = "pretrained Basic Pitch (ICASSP 2022, ONNX)"
    schema_definition = "model_basic_pitch"
    reads = "audio"
    decoder = "basic_pitch"

    params = (
        Param("onset_thresholds", [0.3, 0.4, 0.5, 0.6, 0.7],
              type="array", items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, minItems=1,
              meaning="Basic Pitch onset thresholds tried on the validation split."),
        Param("frame_thresholds", [0.2, 0.3, 0.4, 0.5],
              type="array", items={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, minItems=1,
              meaning="Basic Pitch frame (note) thresholds tried on the validation split."),
        Param("min_note_ms", [127.7], type="array", items={"type": "number", "exclusiveMinimum": 0}, minItems=1,
              meaning="Minimum note lengths (ms) tried on the validation split (127.7 is Basic Pitch's default)."),
        Param("melodia_trick", True, type="boolean",
              meaning="Basic Pitch's extra pass adding notes from leftover frame energy without a detected onset."),
    )

    def training_data(self, spec):
        return None

    def fit(self, spec, run, log=print):
        from ..deep.basic_pitch_onnx import count_parameters, model_path, versions
        return pretrained(count_parameters(model_path()), versions())

    #: Basic Pitch's audio rate and the hop of its outputs (basic_pitch.constants'
    #: AUDIO_SAMPLE_RATE and FFT_HOP; tests/test_basic_pitch.py holds them equal)
    sample_rate = 22050
    hop_length = 256

    def score_threshold(self, params, peak):
        """Its note posteriorgram holds probabilities: its frame threshold, unscaled."""
        return params["frame_threshold"], 1.0

    def transcriber(self, arrays, spec, device):
        from ..deep.basic_pitch_onnx import load_model, posteriorgrams
        model = load_model()

        def transcribe(audio) -> dict:
            outputs = posteriorgrams(audio, model)
            return {"note": outputs["note"].T, "onset": outputs["onset"].T}
        return transcribe

    def device_label(self, device) -> str:
        return "cpu (onnxruntime)"

    def make_decoder(self, spec, decoding, evaluation):
        from ..deep.basic_pitch_onnx import NoteCreation
        return NoteCreation(spec, evaluation)
