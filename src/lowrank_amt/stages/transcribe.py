"""The transcription stage (``transcribe.smk``), from files to files, the same for every
model family: ``activations`` computes a trained model's outputs on the validation and
test tracks, ``decode`` chooses its decoder's parameters on the validation split and
writes the test tracks' notes as MIDI. Each writes its outputs atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets.manifest import read_manifest
from ..decoding.decode import pedal_spans
from ..decoding.outputs import TrackOutputs, pack, unpack, write_notes
from ..errors import LowrankAmtError
from ..evaluation.notes import read_reference
from ..instruments import CLASSES
from ..model_file import load_model
from ..runtime.device import pick_device
from ..runtime.io import atomic_path, read_npz, write_json
from ..signal.feature_cache import cache_params, load_track, read_index
from ..signal.spectrogram import bin_frequencies, compute_features

def _tracks(index_path, manifest_path, split) -> pd.DataFrame:
    """The split's tracks of the feature index, with their audio from the manifest
    when one is given."""
    index = read_index(index_path, split)
    if index.empty:
        raise LowrankAmtError(f"{index_path} has no '{split}' tracks")
    if manifest_path is None:
        return index
    audio = read_manifest(manifest_path).set_index("track_id")["audio_path"]
    missing = sorted(set(index["track_id"]) - set(audio.index))
    if missing:
        raise LowrankAmtError(f"manifest {manifest_path} lacks track(s) {missing[:5]} of {index_path}")
    return index.assign(audio_path=[audio[t] for t in index["track_id"]])


def model_inputs(model, index_path, manifest_path, split):
    """(row, input) of each track of ``split``: its features, or for a family that reads
    audio, its recording (from the dataset's manifest) at the family's sample rate."""
    family = model.family
    tracks = _tracks(index_path, None if family.reads_features() else manifest_path, split)
    for row in tracks.itertuples():
        yield row, family.input_of(row)


def check_features(model, index_path) -> None:
    """A model that reads features must meet the parameters it was trained on."""
    if not model.family.reads_features() or model.features is None:
        return
    cache = cache_params(index_path)
    differ = sorted(k for k in set(model.features) | set(cache)
                    if k != "params_hash" and model.features.get(k) != cache.get(k))
    if differ:
        raise LowrankAmtError(f"model {model.path} was trained on features with other parameters than "
                              f"{Path(index_path).parent} (differ: {', '.join(differ)})")


def activations(model_path, index_path, activations_path, info_path, log=print, *, manifest_path=None,
                splits=("validation", "test")) -> None:
    """Outputs of a trained model on every track of ``splits`` (by default validation and
    test: another dataset's test split needs only "test"), each track's ``TrackOutputs``
    as ``decoding/outputs.py`` packs them, and ``frame_rate`` where it is not the feature
    cache's; ``info_path`` gets the time per minute of audio and the device. A family that reads
    audio needs ``manifest_path``."""
    model = load_model(model_path)
    family = model.family
    check_features(model, index_path)
    device = pick_device(model.spec.get("device", "cpu"))
    transcribe = family.transcriber(model.arrays, model.spec, device)
    wall, cpu, audio_seconds, saved = time.perf_counter(), time.process_time(), 0.0, {}
    if not family.reads_features():  # else the feature cache's
        saved["frame_rate"] = np.float64(family.frame_rate())
    for split in splits:
        for row, track in model_inputs(model, index_path, manifest_path, split):
            saved.update(pack(transcribe(track), split, row.track_id))
            audio_seconds += row.duration
            log(f"activations: {split}/{row.track_id}")
    seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
    separator = family.separator(model.arrays, model.spec, device)
    separation = {} if separator is None or manifest_path is None or "test" not in splits else \
        test_separation(separator, index_path, manifest_path, log)
    with atomic_path(activations_path) as tmp:
        np.savez_compressed(tmp, **saved)
    write_json(info_path, {"activation_seconds": seconds, "activation_cpu_seconds": cpu,
                           "audio_seconds": audio_seconds, "seconds_per_audio_minute": 60 * seconds / audio_seconds,
                           "device": family.device_label(device), **({"separation": separation} if separation else {})})


def test_separation(separator, index_path, manifest_path, log=print) -> dict:
    """The separation scores (``separation.separation_scores``) of a model's stems of the
    test tracks that have rendered stems ({} when none has)."""
    from ..datasets.manifest import stem_paths
    from ..evaluation.separation import separation_scores
    params = cache_params(index_path)
    sample_rate, hop, bin_hz = int(params["sample_rate"]), int(params["hop_length"]), bin_frequencies(params)
    tracks = ({"track_id": row.track_id, "audio_path": row.audio_path, "stems": stems, "features": load_track(row)[0]}
              for row in _tracks(index_path, manifest_path, "test").itertuples()
              if (stems := stem_paths(row.audio_path)))
    return separation_scores(lambda features, mixture: separator(features, mixture, sample_rate, hop, bin_hz),
                             tracks, sample_rate, hop, lambda audio: compute_features(audio, params, sample_rate),
                             bin_hz, log)


def load_activations(activations_path):
    """The arrays of an activations stage's file, or an error naming it."""
    return read_npz(activations_path, "activations", "delete it and run the activations stage again")


def track_outputs(arrays, activations_path, split, track_id) -> TrackOutputs:
    """One track's outputs from ``load_activations``."""
    return unpack(arrays, split, track_id, activations_path)


def frame_rate_of(arrays, index: pd.DataFrame) -> float:
    """The frame rate of a model's outputs: its own, else the feature cache's."""
    return float(arrays["frame_rate"]) if "frame_rate" in arrays else float(index["frame_rate"].iloc[0])


def decode(model_path, activations_path, index_path, decoding: dict, evaluation: dict, midi_dir, info_path,
           log=print, *, model_decoding: bool = False) -> None:
    """Choose the decoding parameters of the model's decoder (its family's) on the
    validation split only, then write each test track's notes as MIDI with them.
    ``info_path`` (decoding.json) records the chosen ``params``, ``threshold``, the
    validation score and every validation trial. With ``model_decoding``, the dataset is
    another than the model's: its test tracks are decoded with the parameters chosen on
    the model's own validation split (the model folder's decoding.json)."""
    model = load_model(model_path)
    decoder = model.family.make_decoder(model.spec, decoding, evaluation)
    arrays = load_activations(activations_path)
    index = read_index(index_path)
    frame_rate = frame_rate_of(arrays, index)
    if model_decoding:
        if model.decoding is None:
            raise LowrankAmtError(f"model {model.path} has no decoding.json: decode on its own dataset first")
        _write_test_notes(decoder, model.decoding, arrays, activations_path, index, frame_rate, midi_dir)
        write_json(info_path, {"params": model.decoding, "chosen_on": str(model.path.parent / "decoding.json"),
                               **decoder.info(model.decoding)})
        return
    validation = [(track_outputs(arrays, activations_path, "validation", r.track_id),
                   read_reference(r.midi_path, evaluation))
                  for r in index[index["split"] == "validation"].itertuples()]
    if not validation:
        raise LowrankAmtError(f"{index_path} has no validation tracks to tune the decoding on")
    params, trials, score = decoder.tune(validation, frame_rate)
    shown = {k: v for k, v in params.items() if k != "velocity_curve"}
    log(f"decoding chosen on validation: {shown} (mean note onset F {score:.3f})")
    _write_test_notes(decoder, params, arrays, activations_path, index, frame_rate, midi_dir)
    write_json(info_path, {"params": params, "validation_note_onset_f": score, "validation_trials": trials,
                           **decoder.info(params)})


def _write_test_notes(decoder, params, arrays, activations_path, index, frame_rate, midi_dir) -> None:
    midi_dir = Path(midi_dir)
    midi_dir.mkdir(parents=True, exist_ok=True)
    for row in index[index["split"] == "test"].itertuples():
        outputs = track_outputs(arrays, activations_path, "test", row.track_id)
        path = midi_dir / f"{row.track_id}.mid"
        if "by_class" in outputs:  # one track per instrument class, each decoded alike
            peak = float(outputs["note"].max())
            write_notes(path, by_class={CLASSES[c]: decoder.notes({"note": h}, frame_rate, params, peak=peak)
                                        for c, h in zip(outputs["classes"], outputs["by_class"])})
        else:
            write_notes(path, decoder.notes(outputs, frame_rate, params), pedal=pedal_spans(outputs, frame_rate))
