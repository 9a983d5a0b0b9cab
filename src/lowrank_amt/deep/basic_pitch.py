"""Pretrained Basic Pitch (Bittner et al., ICASSP 2022) as an inference-only baseline.

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
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..audio import load_audio
from ..data.manifest import read_manifest
from ..errors import LowrankAmtError
from ..features import read_index
from ..io import atomic_path, write_json
from ..metrics import note_metrics
from ..notes import read_midi_notes, write_midi_notes

INSTALL_HINT = ("install it without TensorFlow: pip install --no-deps 'basic-pitch==0.4.0' && "
                "pip install onnxruntime 'resampy>=0.4.3'")

#: Weights of the ICASSP 2022 model's convolutions and biases, counted from the ONNX
#: graph's initializers without the fixed CQT kernels (the paper: "about 17 K").
N_PARAMETERS = 16_703

#: Model frames by which consecutive windows overlap (basic_pitch.inference.run_inference).
N_OVERLAPPING_FRAMES = 30

#: Spec keys and defaults; Basic Pitch's own defaults are onset 0.5, frame 0.3, 127.7 ms.
DEFAULTS = {"onset_thresholds": [0.3, 0.4, 0.5, 0.6, 0.7], "frame_thresholds": [0.2, 0.3, 0.4, 0.5],
            "min_note_ms": [127.7], "melodia_trick": True}


def _basic_pitch():
    """(inference, note_creation, constants) modules of basic-pitch, or a clear error."""
    # basic_pitch/__init__ logs a warning per absent backend (TensorFlow, CoreML, TFLite).
    logging.disable(logging.WARNING)
    try:
        from basic_pitch import constants, inference, note_creation
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise LowrankAmtError(f"Basic Pitch needs the basic-pitch package and onnxruntime ({exc}); {INSTALL_HINT}") from exc
    finally:
        logging.disable(logging.NOTSET)
    return inference, note_creation, constants


def versions() -> dict:
    return {"basic_pitch_version": metadata.version("basic-pitch"),
            "onnxruntime_version": metadata.version("onnxruntime")}


def load_model():
    """basic-pitch's ``inference.Model`` on its shipped ONNX file (CPU provider)."""
    inference, _, _ = _basic_pitch()
    import basic_pitch
    path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    if not path.is_file():
        raise LowrankAmtError(f"the basic-pitch package lacks its ONNX model {path}; {INSTALL_HINT}")
    logging.disable(logging.WARNING)
    try:
        model = inference.Model(path)
    finally:
        logging.disable(logging.NOTSET)
    if model.model_type != inference.Model.MODEL_TYPES.ONNX:
        raise LowrankAmtError(f"{path} did not load with onnxruntime; {INSTALL_HINT}")
    return model


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
    _, events = note_creation.model_output_to_notes(
        output, onset_thresh=onset_threshold, frame_thresh=frame_threshold, min_note_len=min_note_len,
        include_pitch_bends=False, melodia_trick=melodia_trick)
    events = sorted(events, key=lambda e: (e[0], e[2]))
    intervals = np.array([[e[0], e[1]] for e in events], dtype=float).reshape(-1, 2)
    pitches = np.array([e[2] for e in events], dtype=int)
    velocities = np.array([int(np.clip(round(127 * e[3]), 1, 127)) for e in events], dtype=int)
    return intervals, pitches, velocities


def tune_thresholds(tracks, spec: dict, onset_tolerance: float = 0.05):
    """The (onset_threshold, frame_threshold, min_note_ms) of the spec's grid with the
    best mean note-onset F over ``tracks``, a list of (note, onset, ref_intervals,
    ref_pitches); ties go to the first in grid order. Returns (params, trials)."""
    spec = {**DEFAULTS, **spec}
    trials, best, best_score = [], None, -np.inf
    for onset_t, frame_t, min_ms in itertools.product(spec["onset_thresholds"], spec["frame_thresholds"],
                                                      spec["min_note_ms"]):
        params = {"onset_threshold": float(onset_t), "frame_threshold": float(frame_t), "min_note_ms": float(min_ms)}
        scores = []
        for note, onset, ref_intervals, ref_pitches in tracks:
            est = posteriorgram_notes(note, onset, **params, melodia_trick=spec["melodia_trick"])
            scores.append(note_metrics(ref_intervals, ref_pitches, est[0], est[1],
                                       onset_tolerance=onset_tolerance)["note_onset_f"])
        score = float(np.mean(scores))
        trials.append({**params, "metric": "note_onset_f", "score": score})
        if score > best_score:
            best, best_score = params, score
    return best, trials


def _tracks(manifest_path, index_path, split) -> pd.DataFrame:
    """The split's tracks of the feature index (as every model sees them), with their
    audio from the manifest."""
    index = read_index(index_path, split)
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no '{split}' tracks")
    audio = read_manifest(manifest_path).set_index("track_id")["audio_path"]
    missing = sorted(set(index["track_id"]) - set(audio.index))
    if missing:
        raise LowrankAmtError(f"manifest {manifest_path} lacks track(s) {missing[:5]} of {index_path}")
    return index.assign(audio_path=[audio[t] for t in index["track_id"]])


def train(spec: dict, info_path) -> None:
    """Basic Pitch is pretrained: record that (train.json) instead of training.
    ``train_seconds`` is null: its training cost is not measured here."""
    _basic_pitch()
    write_json(info_path, {"train_seconds": None, "train_cpu_seconds": None, "device": "none (pretrained)",
                           "n_parameters": N_PARAMETERS, "pretrained": True, "epochs": 0, **versions()})


def infer(spec: dict, manifest_path, index_path, posteriorgrams_path, info_path, log=print) -> None:
    """Note and onset posteriorgrams of every validation and test track, saved as
    float16 arrays ``<split>__<track_id>__note`` and ``__onset`` (frames x 88 at
    22050 / 256 Hz); ``info_path`` gets seconds_per_audio_minute, device and versions."""
    from basic_pitch.constants import AUDIO_SAMPLE_RATE
    spec = {**DEFAULTS, **spec}
    model = load_model()
    wall, cpu, audio_seconds, arrays = time.perf_counter(), time.process_time(), 0.0, {}
    for split in ("validation", "test"):
        for row in _tracks(manifest_path, index_path, split).itertuples():
            audio = load_audio(row.audio_path, AUDIO_SAMPLE_RATE)
            outputs = posteriorgrams(audio, model)
            for key in ("note", "onset"):
                arrays[f"{split}__{row.track_id}__{key}"] = outputs[key].astype(np.float16)
            audio_seconds += len(audio) / AUDIO_SAMPLE_RATE
            log(f"basic pitch: {split}/{row.track_id}")
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with atomic_path(posteriorgrams_path) as tmp:
        np.savez_compressed(tmp, **arrays)
    write_json(info_path, {"activation_seconds": seconds, "activation_cpu_seconds": cpu, "audio_seconds": audio_seconds,
                           "seconds_per_audio_minute": 60 * seconds / audio_seconds,
                           "device": "cpu (onnxruntime)", **versions()})


def decode(spec: dict, posteriorgrams_path, index_path, evaluation: dict, midi_dir, info_path, log=print) -> None:
    """Choose Basic Pitch's thresholds on the validation split, then write each test
    track's notes as MIDI; ``info_path`` (decoding.json) records the chosen ``params``,
    ``threshold`` (the frame threshold, the analogue of the shared decoder's), the
    validation score and every trial."""
    spec = {**DEFAULTS, **spec}
    arrays = np.load(posteriorgrams_path)
    index = read_index(index_path)

    def outputs(split, track_id):
        keys = [f"{split}__{track_id}__{k}" for k in ("note", "onset")]
        if any(k not in arrays for k in keys):
            raise LowrankAmtError(f"{posteriorgrams_path} lacks the posteriorgrams of {split} track {track_id}")
        return [arrays[k].astype(np.float32) for k in keys]

    validation = [(*outputs("validation", r.track_id), *read_midi_notes(r.midi_path)[:2])
                  for r in index[index["split"] == "validation"].itertuples()]
    if not validation:
        raise LowrankAmtError(f"{index_path} has no validation tracks to tune Basic Pitch's thresholds on")
    params, trials = tune_thresholds(validation, spec, evaluation["onset_tolerance"])
    score = max(t["score"] for t in trials)
    log(f"basic pitch thresholds chosen on validation: {params} (mean note onset F {score:.3f})")
    midi_dir = Path(midi_dir)
    midi_dir.mkdir(parents=True, exist_ok=True)
    for row in index[index["split"] == "test"].itertuples():
        notes = posteriorgram_notes(*outputs("test", row.track_id), **params, melodia_trick=spec["melodia_trick"])
        write_midi_notes(midi_dir / f"{row.track_id}.mid", *notes)
    write_json(info_path, {"params": params, "threshold": params["frame_threshold"],
                           "validation_note_onset_f": score, "validation_trials": trials, **versions()})
