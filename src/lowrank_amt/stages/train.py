"""The training stage (``train.smk``), from files to files: ``train`` fits a model of any
family on a feature cache; ``teach`` makes a teacher's transcription the training targets.

A model spec (an entry of the config's ``models``) names its ``family``; the family
(``families/``) does the work, these functions do the files, each written atomically.

**A teacher for audio without annotations** (the idea of "Embeddings as Teachers", Ding &
Lerch, applied to transcription): a trained model, typically pretrained Basic Pitch,
transcribes the training split, and its notes stand in for the MIDI that the other models
learn from.

``teach`` writes a copy of a feature index whose training tracks point to the teacher's
targets: the piano roll, onsets and offsets of the notes that the teacher's own decoder
finds with the parameters chosen on its validation split (its ``decoding.json``), made by
``targets.frame_targets`` at the cache's frame rate exactly as from MIDI. A
semi-supervised low-rank model's masks are then the frames where the teacher's output
holds above its decoding threshold, and every model that learns from the pieces (low-rank,
unrolled, network) can learn from recordings whose MIDI it never reads. Validation and
test tracks keep their MIDI: early stopping, the choice of decoding and the evaluation
are those of every other model. Where the training tracks have MIDI, ``teach`` also
records how well the teacher's roll agrees with it (frame precision, recall, F).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import families
from ..errors import LowrankAmtError
from ..evaluation.registry import evaluation_defaults
from ..evaluation.metrics import precision_recall_f
from ..evaluation.notes import write_midi_notes
from ..learning.epochs import checkpoint_file
from ..learning.loader import select_training_tracks
from ..model_file import load_model, save_model
from ..runtime.device import pick_device
from ..runtime.io import atomic_path, save_array, write_json
from ..runtime.memory import peak_rss_mb
from ..runtime.versions import run_provenance, software_versions
from ..signal.feature_cache import CHECKSUMS, cache_params, load_cached, read_index
from ..signal.targets import frame_targets
from .transcribe import check_features, model_inputs

#: Folder of the teacher's targets beside the index it writes.
TARGETS_FOLDER = "targets"


def train(spec: dict, index_path, model_path, loss_path, info_path, log=print, *,
          checkpoint_dir=None, train_hours: float | None = None, provenance: dict | None = None) -> None:
    """Train a model on the feature cache; write model.npz (``model_file.save_model``),
    loss.csv and train.json. ``train_hours`` trains on the first training tracks
    totalling that duration; ``checkpoint_dir`` holds the epoch loop's checkpoint
    (``last.pt``), resumed when present and removed once the outputs are written;
    ``provenance`` (e.g. the study's dataset and model names and config hash) is stored
    in the model with the training hours and the software versions."""
    family, spec = families.resolve(spec)
    if family.training_data(spec) == "pieces" and family.learns_from_targets(spec):
        check_annotated(index_path, train_hours)
    device = pick_device(spec.get("device", "cpu"))
    checkpoint_path = checkpoint_file(checkpoint_dir)
    run = families.TrainingRun(Path(index_path), train_hours, checkpoint_path, device)
    wall, cpu = time.perf_counter(), time.process_time()
    trained = family.fit(spec, run, log)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with atomic_path(loss_path) as tmp:
        trained.losses.to_csv(tmp, index=False)
    # where and when (train.json only: a model file stays the same bytes run after run)
    write_json(info_path, {"train_seconds": wall, "train_cpu_seconds": cpu, "device": str(device),
                           "train_hours": train_hours, "peak_rss_mb": peak_rss_mb(), "run": run_provenance(),
                           "memory_grows_with_data": family.memory_grows_with_data(spec),
                           **trained.info})
    # a hand-made cache (tests, benchmarks) may have no params.json: such a model
    # transcribes that cache only, never new audio
    has_params = (Path(index_path).parent / "params.json").exists()
    features = cache_params(index_path) if family.reads_features() and has_params else None
    provenance = {**(provenance or {}), "train_hours": train_hours, "versions": software_versions()}
    save_model(model_path, family.name, spec, trained.arrays, features=features, provenance=provenance)
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    log(f"trained in {wall:.1f} s wall, {cpu:.1f} s CPU")


def check_annotated(index_path, train_hours) -> None:
    """A model that learns from the training targets refuses recordings without MIDI
    (they have silent targets until a teacher annotates them)."""
    tracks = select_training_tracks(read_index(index_path), train_hours)
    if "annotated" in tracks.columns and not tracks["annotated"].astype(bool).all():
        first = tracks.loc[~tracks["annotated"].astype(bool), "track_id"].iloc[0]
        raise LowrankAmtError(f"training track {first} of {index_path} has no MIDI: name a model to annotate "
                              "the training audio in the model's 'teacher' key")


def teach(model_path, index_path, out_index, info_path, log=print, *, manifest_path=None) -> dict:
    """Write ``out_index`` (see the module docstring) and ``info_path`` (teach.json:
    tracks, notes, seconds, and agreement with the MIDI where there is some); returns the info."""
    model = load_model(model_path)
    if model.decoding is None:
        raise LowrankAmtError(f"teacher {model.path} has no decoding.json: decode it on its validation split first")
    check_features(model, index_path)
    family, out_index = model.family, Path(out_index)
    transcribe = family.transcriber(model.arrays, model.spec, pick_device(model.spec.get("device", "cpu")))
    decoder = family.make_decoder(model.spec, {}, evaluation_defaults())
    index = read_index(index_path)
    rate = family.frame_rate(float(index["frame_rate"].iloc[0]))
    folder = out_index.parent / TARGETS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    start, n_notes, agreement, checksums = time.perf_counter(), 0, np.zeros(3), {}
    for row, track in model_inputs(model, index_path, manifest_path, "train"):
        intervals, pitches, velocities = decoder.notes(transcribe(track), rate, model.decoding)
        targets = frame_targets(intervals, pitches, int(row.n_frames), float(row.frame_rate))
        at = index.index[(index["split"] == "train") & (index["track_id"] == row.track_id)]
        if getattr(row, "annotated", True) and Path(row.roll_path).exists():
            agreement += _overlap(targets["roll"], load_cached(row.roll_path))
        for name, array in targets.items():
            if f"{name}_path" in index.columns:
                checksums[f"{row.track_id}.{name}.npy"] = save_array(folder / f"{row.track_id}.{name}.npy", array)
                index.loc[at, f"{name}_path"] = str(folder / f"{row.track_id}.{name}.npy")
        write_midi_notes(folder / f"{row.track_id}.mid", intervals, pitches, velocities)
        index.loc[at, "midi_path"] = str(folder / f"{row.track_id}.mid")
        if "annotated" in index.columns:
            index.loc[at, "annotated"] = True
        n_notes += len(pitches)
        log(f"teacher: {row.track_id}, {len(pitches)} notes")
    write_json(folder / CHECKSUMS, checksums)
    shutil.copyfile(Path(index_path).parent / "params.json", out_index.parent / "params.json")
    with atomic_path(out_index) as tmp:
        relative_paths(index, out_index.parent).to_csv(tmp, index=False)
    info = {"teacher": str(model.path), "n_tracks": int((index["split"] == "train").sum()), "n_notes": n_notes,
            "seconds": time.perf_counter() - start, **_agreement(agreement)}
    write_json(info_path, info)
    return info


def relative_paths(index: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The index's file paths (all but the MIDI's) relative to ``folder``, where it is
    written, as a feature index's are (so that the results folder can move)."""
    columns = [c for c in index.columns if c.endswith("_path") and c != "midi_path"]
    return index.assign(**{c: [os.path.relpath(Path(p).resolve(), folder.resolve()) for p in index[c]]
                           for c in columns})


def _overlap(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(true positives, reference, estimated) active frames of two rolls."""
    estimate, reference = estimate.astype(bool), np.asarray(reference).astype(bool)
    return np.array([(estimate & reference).sum(), reference.sum(), estimate.sum()], dtype=float)


def _agreement(counts: np.ndarray) -> dict:
    """Frame precision, recall and F of the teacher's rolls against the MIDI's; empty
    when the training tracks have no MIDI rolls."""
    if not counts[1]:
        return {}
    scores = precision_recall_f("frame", *counts)
    return {"frame_precision_vs_midi": scores["frame_p"], "frame_recall_vs_midi": scores["frame_r"],
            "frame_f_vs_midi": scores["frame_f"]}
