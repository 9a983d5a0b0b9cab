"""Pretrained Transkun 2.0 as a model family, the ceiling of the study's tables: nothing
to train, transcription from the audio (44100 Hz, its own 16 s segments,
``deep/transkun_pretrained.py``), its notes written on a 100 Hz grid and read back as
they are by its decoder: nothing is tuned on the validation split."""

from __future__ import annotations

import numpy as np

from ..deep.transkun_pretrained import HOP_LENGTH, SAMPLE_RATE
from .base import Family, pretrained
from .schema import DEVICE


class Transkun(Family):
    name = "transkun"
    description = "pretrained Transkun 2.0 (ISMIR 2024), the piano transcription reference"
    schema_definition = "model_transkun"
    reads = "audio"
    decoder = "transkun"
    params = (DEVICE,)
    #: its audio rate, and the hop of the grid its notes are written on (100 Hz)
    sample_rate, hop_length = SAMPLE_RATE, HOP_LENGTH

    def training_data(self, spec):
        return None

    def fit(self, spec, run, log=print):
        from ..deep.transkun_pretrained import count_parameters, load_model, versions
        return pretrained(count_parameters(load_model()), versions())

    def score_threshold(self, params, peak):
        """Its outputs are 0 or 1 (a note sounds or not)."""
        return 0.5, 1.0

    def transcriber(self, arrays, spec, device):
        from ..deep.transkun_pretrained import load_model, notes_to_outputs, transcribe_notes
        model = load_model(str(device))

        def transcribe(audio) -> dict:
            n_frames = 1 + len(audio) // self.hop_length
            return notes_to_outputs(*transcribe_notes(audio, model), n_frames)
        return transcribe

    def make_decoder(self, spec, decoding, evaluation):
        return NotesAsWritten(evaluation)


class NotesAsWritten:
    """The decoder of Transkun's outputs (the contract of ``tuning.GridDecoder``): its
    notes read back from the grid they were written on; there is nothing to choose, and
    ``tune`` only scores them on the validation tracks."""

    def __init__(self, evaluation: dict):
        self.onset_tolerance = evaluation["onset_tolerance"]

    def notes(self, outputs: dict, frame_rate: float, params: dict, peak: float | None = None):
        from ..deep.transkun_pretrained import outputs_to_notes
        return outputs_to_notes(outputs, frame_rate)

    def tune(self, tracks, frame_rate: float):
        """(no parameters, the one trial, its mean validation note-onset F)."""
        from ..evaluation.metrics import note_metrics
        score = float(np.mean([note_metrics(ref_intervals, ref_pitches, *self.notes(outputs, frame_rate, {})[:2],
                                            onset_tolerance=self.onset_tolerance)["note_onset_f"]
                               for outputs, (ref_intervals, ref_pitches, _) in tracks]))
        return {}, [{"metric": "note_onset_f", "score": score}], score

    def default_params(self) -> dict:
        return {}

    def info(self, params: dict) -> dict:
        from ..deep.transkun_pretrained import versions
        return {"threshold": 0.5, **versions()}
