"""Steering measured on a study's unseen-piano test split (the default study's, after
``make study``): score-informed transcription with a perturbed score, and the dictionary
adapted to the test piano.

    .venv/bin/python bench/bench_steering.py results/bench/steering.md

Rows, each a mean note-onset F over the test tracks (mir_eval, 50 ms), per model:
- ``plain``: ``lowrank-amt transcribe`` as the study decodes (the study's own numbers);
- ``score_informed``: with the track's MIDI as the score, its onsets and offsets moved by
  up to 100 ms, 10 % of its notes deleted and as many random notes added (seeded), at
  ``--score-weight`` 0.3 and 0 (confined);
- ``adapted``: the dictionary adapted (``--adapt``) to a 20-second recording of the test
  piano (every third key of its range, 0.6 s each, rendered with the study's soundfont
  and test program) with its MIDI; ``adapted_self``: adapted to each test recording itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import yaml

from lowrank_amt.decoding.steering import Steering
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import read_midi_notes, write_midi_notes
from lowrank_amt.recordings import transcribe_files

QUIET = dict(log=lambda m: None)


def perturbed(intervals, pitches, rng, jitter=0.1, share=0.1):
    keep = rng.random(len(pitches)) >= share
    moved = intervals[keep] + rng.uniform(-jitter, jitter, (int(keep.sum()), 2))
    moved[:, 0] = np.maximum(moved[:, 0], 0.0)
    moved[:, 1] = np.maximum(moved[:, 1], moved[:, 0] + 0.05)
    n_extra = int(round(share * len(pitches)))
    starts = rng.uniform(0, intervals[:, 1].max(), n_extra)
    extra = np.stack([starts, starts + rng.uniform(0.2, 0.8, n_extra)], axis=1)
    return np.concatenate([moved, extra]), np.concatenate([pitches[keep], rng.integers(36, 97, n_extra)])


def calibration_recording(config: dict, folder: Path) -> tuple[Path, Path]:
    """Every third key of the dataset's range on its test piano, 0.6 s each, and its MIDI."""
    from lowrank_amt.datasets.rendering import find_soundfont, render
    dataset = next(iter(config["datasets"].values()))
    low, high = dataset.get("pitch_range", [21, 108])
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=dataset.get("test_programs", [2])[0])
    for i, key in enumerate(range(low, high + 1, 3)):
        piano.notes.append(pretty_midi.Note(90, key, 0.6 * i + 0.1, 0.6 * i + 0.6))
    midi.instruments.append(piano)
    midi.write(str(folder / "calibration.mid"))
    soundfont = find_soundfont(dataset.get("test_soundfont") or dataset.get("soundfont", "auto"))
    render(folder / "calibration.mid", folder / "calibration.wav", soundfont, config["sample_rate"])
    return folder / "calibration.wav", folder / "calibration.mid"


def mean_f(out: Path, tests) -> float:
    scores = []
    for row in tests:
        ref = read_midi_notes(row.midi)
        est = read_midi_notes(out / f"{Path(row.audio).stem}.mid")
        scores.append(note_metrics(ref[0], ref[1], est[0], est[1])["note_onset_f"])
    return float(np.mean(scores))


def bench_model(name: str, model: str, tests, work: Path, calibration, seed: int = 0) -> list[dict]:
    audio = [row.audio for row in tests]
    runs = {"plain": dict()}
    if name != "basic_pitch":
        runs["adapted"] = dict(adapt=calibration)
        runs["adapted_self"] = dict(adapt_self=True)
    rows = []
    for run, options in runs.items():
        transcribe_files(model, audio, work / name / run, **options, **QUIET)
        rows.append({"model": name, "run": run, "note_onset_f": mean_f(work / name / run, tests)})
    for weight in (0.3, 0.0):
        out = work / name / f"score_{weight}"
        for i, row in enumerate(tests):
            intervals, pitches, _ = read_midi_notes(row.midi)
            score = perturbed(intervals, pitches, np.random.default_rng([seed, i]))
            write_midi_notes(work / f"score_{i}.mid", *score)
            steering = Steering.from_options(score=work / f"score_{i}.mid", score_weight=weight)
            transcribe_files(model, [row.audio], out, steering=steering, **QUIET)
        rows.append({"model": name, "run": f"score_informed (weight {weight})", "note_onset_f": mean_f(out, tests)})
    for row in rows:
        print(row, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="markdown file to write")
    parser.add_argument("--study", type=Path, default=Path("results/default"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--models", nargs="*", default=["nmf_sup_kl", "nmfd_sup_kl", "basic_pitch"])
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    manifest_path = next((args.study / "data").glob("*/manifest.csv"))
    manifest = pd.read_csv(manifest_path)
    tests = [argparse.Namespace(audio=manifest_path.parent / r.audio_path, midi=manifest_path.parent / r.midi_path)
             for r in manifest[manifest["split"] == "test"].itertuples()]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        calibration = calibration_recording(config, Path(work))
        for name in args.models:
            folders = sorted((args.study / "models").glob(f"*/*/{name}/*/model.npz"))
            model = "basic_pitch" if name == "basic_pitch" else str(folders[-1].parent)
            rows += bench_model(name, model, tests, Path(work), calibration)
    table = pd.DataFrame(rows).pivot(index="model", columns="run", values="note_onset_f").reset_index()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    print(table.to_string(index=False), flush=True)


if __name__ == "__main__":
    sys.exit(main())
