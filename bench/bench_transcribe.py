"""Transcription of recordings with trained models (``lowrank-amt transcribe``): speed of
every family against pretrained Basic Pitch on the same files, and peak memory for a
short and a long recording.

    .venv/bin/python bench/bench_transcribe.py results/bench/transcribe.md            # after make study
    .venv/bin/python bench/bench_transcribe.py results/bench/transcribe.md --minutes 1 60
    .venv/bin/python bench/bench_transcribe.py out.md --study results/pianos --models unrolled_nmfd --memory-models

Rows:
- ``real_time_factor``: seconds of transcription (features or audio in, MIDI out) per
  second of audio, over the default study's test recordings, for each model folder of
  the study (its largest training size) and for ``basic_pitch``; ``vs_basic_pitch``: Basic
  Pitch's factor over the model's (> 1: faster than Basic Pitch);
- ``peak_memory``: peak resident memory of a ``transcribe`` process (its own process,
  median of 3) on a recording of the short and of the long length (the study's test
  pieces repeated, written to disk in pieces); ratio = long / short.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from tables import write_table

STUDY = Path("results/default")
TRANSCRIBE_ONE = """
import sys
from lowrank_amt.runtime.memory import peak_rss_mb
from lowrank_amt.recordings import transcribe_files
transcribe_files(sys.argv[1], [sys.argv[2]], sys.argv[3], log=lambda m: None)
print(peak_rss_mb())
"""


def study_models(study: Path) -> dict[str, str]:
    """name -> model folder of the study's largest training size, and basic_pitch."""
    models = {}
    for model_dir in sorted((study / "models").glob("*/*/*")):
        sizes = sorted((p for p in model_dir.iterdir() if (p / "model.npz").exists()),
                       key=lambda p: float(p.name[:-1]) if p.name.endswith("h") else -1.0)
        if sizes and (sizes[-1] / "decoding.json").exists():
            models[model_dir.name] = str(sizes[-1])
    models["basic_pitch"] = "basic_pitch"
    return models


def test_recordings(study: Path) -> list[Path]:
    manifest = pd.read_csv(next((study / "data").glob("*/manifest.csv")))
    folder = next((study / "data").glob("*/manifest.csv")).parent
    return [folder / p for p in manifest.loc[manifest["split"] == "test", "audio_path"]]


def long_recording(sources: list[Path], minutes: float, path: Path) -> Path:
    """The sources repeated to ``minutes``, written to ``path`` a piece at a time."""
    rate = soundfile.info(str(sources[0])).samplerate
    target, written = int(minutes * 60 * rate), 0
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        while written < target:
            for source in sources:
                audio, _ = soundfile.read(str(source), dtype="float32")
                audio = audio[: target - written]
                out.write(audio)
                written += len(audio)
                if written >= target:
                    break
    return path


def bench_speed(models: dict, recordings: list[Path], work: Path) -> list[dict]:
    from lowrank_amt.recordings import transcribe_files
    seconds = sum(soundfile.info(str(p)).duration for p in recordings)
    factors = {}
    for name, model in models.items():
        transcribe_files(model, recordings[:1], work / "warm" / name, log=lambda m: None)  # load, compile
        start = time.perf_counter()
        transcribe_files(model, recordings, work / name, log=lambda m: None)
        factors[name] = (time.perf_counter() - start) / seconds
    return [{"benchmark": "real_time_factor", "model": name, "size": f"{len(recordings)} files, {seconds:.0f} s",
             "value": factor, "vs_basic_pitch": factors["basic_pitch"] / factor, "target": "report"}
            for name, factor in factors.items()]


def bench_memory(models: dict, recordings: list[Path], minutes: tuple, work: Path, repeats: int = 3) -> list[dict]:
    files = {m: long_recording(recordings, m, work / f"{m}min.wav") for m in minutes}
    rows = []
    for name, model in models.items():
        peaks = {}
        for m, path in files.items():
            runs = [float(subprocess.run([sys.executable, "-c", TRANSCRIBE_ONE, model, str(path),
                                          str(work / f"out_{name}_{m}_{r}")], check=True, capture_output=True,
                                         text=True).stdout.split()[-1]) for r in range(repeats)]
            peaks[m] = float(np.median(runs))
        rows.append({"benchmark": "peak_memory", "model": name, "size": f"{minutes[0]} vs {minutes[1]} min",
                     "value": peaks[minutes[1]] / peaks[minutes[0]],
                     "detail": f"{peaks[minutes[0]]:.0f} -> {peaks[minutes[1]]:.0f} MB (median of {repeats})",
                     "target": "ratio <= 1.10"})
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="markdown file to write (a .csv is written beside it)")
    parser.add_argument("--study", type=Path, default=STUDY, help="a study's results folder (default results/default)")
    parser.add_argument("--minutes", nargs=2, type=float, default=(1.0, 60.0), help="short and long recording")
    parser.add_argument("--models", nargs="*", help="time only these models of the study (and basic_pitch)")
    parser.add_argument("--memory-models", nargs="*", default=["nmf_sup_kl", "harmonic_net", "basic_pitch"],
                        help="models whose memory is measured (each long run takes minutes)")
    args = parser.parse_args(argv)
    models, recordings = study_models(args.study), test_recordings(args.study)
    if args.models:
        models = {name: path for name, path in models.items() if name in {*args.models, "basic_pitch"}}
    with tempfile.TemporaryDirectory() as work:
        rows = bench_speed(models, recordings, Path(work))
        write_table(rows, args.out)
        chosen = {name: models[name] for name in args.memory_models if name in models}
        if chosen:
            rows += bench_memory(chosen, recordings, tuple(args.minutes), Path(work))
    write_table(rows, args.out)


if __name__ == "__main__":
    sys.exit(main())
