"""Pretrained Basic Pitch (Bittner et al., ICASSP 2022): the model, its posteriorgrams
and its note creation (``families/basic_pitch.py`` makes it a model family).

The basic-pitch package ships its ICASSP 2022 model as ONNX
(``saved_models/icassp_2022/nmp.onnx``); onnxruntime runs it, so TensorFlow is never
needed (install with ``pip install --no-deps basic-pitch`` plus onnxruntime and
resampy, which its note-creation module imports). Its library differs from the paper,
so every output records the package version.

Pipeline, reusing basic-pitch's own code: audio at 22050 Hz -> 2 s windows overlapping
by 30 model frames (``inference.window_audio_file``) -> ONNX model, one window per run
-> ``inference.unwrap_output`` -> note and onset posteriorgrams (frames x 88 at
22050 / 256 Hz) -> notes by ``note_creation.model_output_to_notes`` (no pitch bends),
whose onset threshold, frame threshold and minimum note length are chosen on the
validation split from a grid and applied unchanged to the test split, as the shared
decoder's parameters are for every other model.
"""

from __future__ import annotations

import itertools
import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import LowrankAmtError
from ..evaluation.metrics import note_metrics

INSTALL_HINT = ("install it without TensorFlow: pip install --no-deps 'basic-pitch==0.4.0' && "
                "pip install onnxruntime 'resampy>=0.4.3'")

#: Model frames by which consecutive windows overlap (basic_pitch.inference.run_inference).
N_OVERLAPPING_FRAMES = 30

def _basic_pitch():
    """(inference, note_creation, constants) modules of basic-pitch, or a clear error."""
    # basic_pitch/__init__ logs a warning per absent backend (TensorFlow, CoreML, TFLite).
    logging.disable(logging.WARNING)
    try:
        import onnxruntime  # noqa: F401
        from basic_pitch import constants, inference, note_creation
    except ImportError as exc:
        raise LowrankAmtError(f"Basic Pitch needs the basic-pitch package and onnxruntime ({exc}); {INSTALL_HINT}") from exc
    finally:
        logging.disable(logging.NOTSET)
    return inference, note_creation, constants


def versions() -> dict:
    return {"basic_pitch_version": metadata.version("basic-pitch"),
            "onnxruntime_version": metadata.version("onnxruntime")}


def model_path() -> Path:
    """The ONNX file the basic-pitch package ships, or a clear error."""
    _basic_pitch()
    import basic_pitch
    path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    if not path.is_file():
        raise LowrankAmtError(f"the basic-pitch package lacks its ONNX model {path}; {INSTALL_HINT}")
    return path


def load_model():
    """basic-pitch's ``inference.Model`` on its shipped ONNX file (CPU provider)."""
    inference, _, _ = _basic_pitch()
    path = model_path()
    logging.disable(logging.WARNING)
    try:
        model = inference.Model(path)
    finally:
        logging.disable(logging.NOTSET)
    if model.model_type != inference.Model.MODEL_TYPES.ONNX:
        raise LowrankAmtError(f"{path} did not load with onnxruntime; {INSTALL_HINT}")
    return model


def _varint(buffer: bytes, i: int) -> tuple[int, int]:
    """(value, next position) of the protobuf varint at ``buffer[i]``."""
    value = shift = 0
    while True:
        byte = buffer[i]
        value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
        if byte < 0x80:
            return value, i


def _fields(message: bytes):
    """(field number, value) of a protobuf message: varints as int, the rest as bytes."""
    i = 0
    while i < len(message):
        key, i = _varint(message, i)
        if key & 7 == 0:
            value, i = _varint(message, i)
        else:
            width, i = _varint(message, i) if key & 7 == 2 else ({1: 8, 5: 4}[key & 7], i)
            value, i = message[i:i + width], i + width
        yield key >> 3, value


def _ints(values: list) -> list[int]:
    """A repeated int64 field's values, whether each came alone or packed."""
    out = []
    for value in values:
        i = 0
        while isinstance(value, bytes) and i < len(value):
            number, i = _varint(value, i)
            out.append(number)
        if isinstance(value, int):
            out.append(value)
    return out


def count_parameters(path) -> int:
    """Learned numbers of Basic Pitch's ONNX model: the float initializers that feed its
    convolutions and its input batch norm (``Mul``, ``Add``), without the CQT front end
    (the 256-tap kernels and their biases, the constants of ``cq_t*`` and
    ``normalized_log``). Read from the protobuf itself (ModelProto graph = 7; GraphProto
    node = 1, initializer = 5; TensorProto dims = 1, data_type = 2, name = 8; NodeProto
    input = 1, op_type = 4), so that the ``onnx`` package is not needed."""
    graph = next(value for number, value in _fields(Path(path).read_bytes()) if number == 7)
    shapes, nodes = {}, []
    for number, value in _fields(graph):
        fields = list(_fields(value)) if number in (1, 5) else []
        if number == 5 and dict(fields).get(2) == 1:  # a FLOAT initializer
            shapes[dict(fields)[8].decode()] = _ints([v for n, v in fields if n == 1])
        elif number == 1:
            nodes.append((dict(fields)[4].decode(), [v.decode() for n, v in fields if n == 1]))
    learned = set()
    for op_type, inputs in nodes:
        front_end = op_type == "Conv" and shapes.get(inputs[1], [0])[-1] == 256
        if op_type in ("Conv", "Mul", "Add") and not front_end:
            learned.update(name for name in inputs[1:] if name in shapes
                           and "cq_t" not in name and "normalized_log" not in name)
    return sum(int(np.prod(shapes[name])) for name in learned)


def posteriorgrams(audio: np.ndarray, model, batch_windows: int = 1) -> dict:
    """Note and onset posteriorgrams (frames x 88, in [0, 1]) of mono audio at 22050 Hz,
    as ``basic_pitch.inference.run_inference`` computes them. One window per model run
    (the default) reproduces it exactly; more are about 30 % faster on CPU, but
    onnxruntime's batched kernels move posteriors by up to ~0.03."""
    inference, _, constants = _basic_pitch()
    overlap = N_OVERLAPPING_FRAMES * constants.FFT_HOP
    padded = np.concatenate([np.zeros(overlap // 2, dtype=np.float32), np.asarray(audio, dtype=np.float32)])
    windows = np.stack([w for w, _ in inference.window_audio_file(padded, constants.AUDIO_N_SAMPLES - overlap)])
    outputs = {"note": [], "onset": []}
    for start in range(0, len(windows), batch_windows):
        predicted = model.predict(windows[start:start + batch_windows])
        for key in outputs:
            outputs[key].append(predicted[key])
    return {key: inference.unwrap_output(np.concatenate(parts), len(audio), N_OVERLAPPING_FRAMES)
            for key, parts in outputs.items()}


def posteriorgram_notes(note: np.ndarray, onset: np.ndarray, onset_threshold: float, frame_threshold: float,
                        min_note_ms: float = 127.7, melodia_trick: bool = True):
    """(intervals, pitches, velocities) by Basic Pitch's note creation, without pitch
    bends; velocity is 127 times the note's mean note posterior."""
    _, note_creation, constants = _basic_pitch()
    min_note_len = int(np.round(min_note_ms / 1000 * (constants.AUDIO_SAMPLE_RATE / constants.FFT_HOP)))
    # model_output_to_notes reads the contour only for its number of frames when pitch
    # bends are off; a zero-width one stands in for it.
    output = {"note": note, "onset": onset, "contour": np.zeros((len(note), 0), dtype=np.float32)}
    # on silence or a few samples its onset rescaling divides 0 by 0 (NaNs it then ignores):
    # no warning for the user to read
    with np.errstate(divide="ignore", invalid="ignore"):
        _, events = note_creation.model_output_to_notes(
            output, onset_thresh=onset_threshold, frame_thresh=frame_threshold, min_note_len=min_note_len,
            include_pitch_bends=False, melodia_trick=melodia_trick)
    events = sorted(events, key=lambda e: (e[0], e[2]))
    intervals = np.array([[e[0], e[1]] for e in events], dtype=float).reshape(-1, 2)
    pitches = np.array([e[2] for e in events], dtype=int)
    velocities = np.array([int(np.clip(round(127 * e[3]), 1, 127)) for e in events], dtype=int)
    return intervals, pitches, velocities


class NoteCreation:
    """Basic Pitch's note creation as a decoder (the contract of ``tuning.GridDecoder``):
    its onset threshold, frame threshold and minimum note length are chosen on the
    validation split from the spec's grid; ties go to the first in grid order."""

    def __init__(self, spec: dict, evaluation: dict):
        self.spec = spec  # complete: families/basic_pitch.py declares its keys and defaults
        self.onset_tolerance = evaluation["onset_tolerance"]

    def notes(self, outputs: dict, frame_rate: float, params: dict, peak: float | None = None):
        """(intervals, pitches, velocities) of one track's posteriorgrams (88 x frames);
        their thresholds are probabilities, so a piece's ``peak`` does not matter."""
        return posteriorgram_notes(np.asarray(outputs["note"]).T, np.asarray(outputs["onset"]).T, **params,
                                   melodia_trick=self.spec["melodia_trick"])

    def tune(self, tracks, frame_rate: float):
        """(params, trials, best score) over ``tracks``, a list of (outputs, reference
        notes)."""
        trials, best, best_score = [], None, -np.inf
        for onset_t, frame_t, min_ms in itertools.product(self.spec["onset_thresholds"],
                                                          self.spec["frame_thresholds"], self.spec["min_note_ms"]):
            params = {"onset_threshold": float(onset_t), "frame_threshold": float(frame_t),
                      "min_note_ms": float(min_ms)}
            scores = []
            for outputs, (ref_intervals, ref_pitches, _) in tracks:
                est = self.notes(outputs, frame_rate, params)
                scores.append(note_metrics(ref_intervals, ref_pitches, est[0], est[1],
                                           onset_tolerance=self.onset_tolerance)["note_onset_f"])
            score = float(np.mean(scores))
            trials.append({**params, "metric": "note_onset_f", "score": score})
            if score > best_score:
                best, best_score = params, score
        return best, trials, best_score

    def default_params(self) -> dict:
        """Basic Pitch's own defaults, for transcription without a study."""
        return {"onset_threshold": 0.5, "frame_threshold": 0.3, "min_note_ms": 127.7}

    def info(self, params: dict) -> dict:
        """decoding.json's extra entries: ``threshold`` is the frame threshold, the
        analogue of the shared decoder's; the package versions."""
        return {"threshold": params["frame_threshold"], **versions()}
