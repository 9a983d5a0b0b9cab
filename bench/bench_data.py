"""Data-layer throughput and memory: synthesis, feature extraction, streaming loader.

    .venv/bin/python bench/bench_data.py [--hours 0.1] [--loader-hours 1 10] [--out bench.json]

1. Synthesis: hours of audio per minute of wall time to compose and render training
   pieces with fluidsynth, on one thread and on every core (the ratio is the parallel
   speed-up).
2. Features: seconds of audio per second of wall time on one core (OMP_NUM_THREADS=1)
   for each kind, over the audio of step 1; librosa's first call (numba JIT, filter
   construction) is timed apart.
3. Loader: random feature caches in the index format (30-s tracks, 264 bins, float32) of
   each size; each epoch runs in a fresh process that reports its peak resident memory
   during the epoch and frames per second, beside the peer: loading the whole split into
   memory, as a full-batch method would.

Wall-time rates depend on the other jobs of a shared machine; the CPU-time rates
(process and child CPU seconds) do much less.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: features are timed per core

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SAMPLE_RATE = 22050
HOP = 512
N_BINS = 264
TRACK_SECONDS = 30.0


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (fluidsynth): a figure that
    holds on a shared machine, where wall time depends on the other jobs."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_synthesis(folder: Path, hours: float) -> dict:
    from lowrank_amt.datasets.manifest import read_manifest
    from lowrank_amt.datasets.synth import prepare
    spec = {"kind": "synthetic", "seed": 0, "train_hours": hours, "n_validation": 0, "n_test": 0,
            "piece_seconds": TRACK_SECONDS, "isolated_velocities": []}
    out = {}
    for jobs in (1, os.cpu_count()):
        manifest = folder / f"synth_j{jobs}" / "manifest.csv"
        start, cpu = time.perf_counter(), _cpu_seconds()
        prepare(spec, manifest, SAMPLE_RATE, jobs=jobs, log=lambda m: None)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        audio_hours = read_manifest(manifest)["duration"].sum() / 3600
        out[f"jobs_{jobs}"] = {"audio_hours": audio_hours, "wall_s": wall, "cpu_s": cpu,
                               "audio_hours_per_minute": audio_hours / (wall / 60),
                               "audio_hours_per_cpu_minute": audio_hours / (cpu / 60)}
    out["parallel_speedup"] = out[f"jobs_{os.cpu_count()}"]["audio_hours_per_minute"] / out["jobs_1"]["audio_hours_per_minute"]
    return out


def bench_features(manifest: Path, folder: Path) -> dict:
    from lowrank_amt.signal.audio import load_audio
    from lowrank_amt.datasets.manifest import read_manifest
    from lowrank_amt.signal.spectrogram import compute_features
    from lowrank_amt.stages.features import extract_dataset
    out = {}
    audio_seconds = read_manifest(manifest)["duration"].sum()
    first = load_audio(read_manifest(manifest)["audio_path"][0], SAMPLE_RATE)[: SAMPLE_RATE]
    for kind in ("cqt", "logstft", "stft"):
        spec = {"kind": kind}
        start = time.perf_counter()
        compute_features(first, spec, SAMPLE_RATE)
        warmup = time.perf_counter() - start
        start, cpu = time.perf_counter(), _cpu_seconds()
        extract_dataset(manifest, spec, SAMPLE_RATE, folder / f"features_{kind}" / "index.csv", log=lambda m: None)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        out[kind] = {"first_call_s": warmup, "audio_s": audio_seconds, "wall_s": wall, "cpu_s": cpu,
                     "x_realtime_per_core": audio_seconds / wall, "x_realtime_per_cpu_second": audio_seconds / cpu}
    return out


def write_random_cache(folder: Path, hours: float, seed: int = 0) -> Path:
    """A feature cache in the index format with random features: ``hours`` of 30-s tracks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frame_rate = SAMPLE_RATE / HOP
    n_frames = int(TRACK_SECONDS * frame_rate)
    rows = []
    for t in range(int(np.ceil(hours * 3600 / TRACK_SECONDS))):
        track = f"train_{t:05d}"
        np.save(folder / f"{track}.npy", rng.random((N_BINS, n_frames), dtype=np.float32))
        np.save(folder / f"{track}.roll.npy", (rng.random((88, n_frames)) < 0.05).astype(np.uint8))
        rows.append({"track_id": track, "split": "train", "features_path": f"{track}.npy",
                     "roll_path": f"{track}.roll.npy", "midi_path": "", "n_frames": n_frames,
                     "frame_rate": frame_rate, "duration": TRACK_SECONDS})
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    return folder / "index.csv"


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loader_child(index_path: str, mode: str) -> dict:
    """One epoch (or the in-memory peer) in this process: frame rate, resident memory
    after the imports, and the peak resident memory during the epoch (the peak is reset
    after the imports through /proc/self/clear_refs)."""
    from lowrank_amt.signal.feature_cache import read_index
    from lowrank_amt.learning.loader import FrameBatches
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_mb("VmRSS")
    start, frames, checksum = time.perf_counter(), 0, 0.0
    if mode == "in_memory":
        index = read_index(index_path, "train")
        features = np.concatenate([np.load(p) for p in index["features_path"]], axis=1)
        rolls = np.concatenate([np.load(p) for p in index["roll_path"]], axis=1)
        order = np.random.default_rng(0).permutation(features.shape[1])
        for b in range(0, len(order), 4096):
            x, y = features[:, order[b:b + 4096]], rolls[:, order[b:b + 4096]]
            frames, checksum = frames + x.shape[1], checksum + float(x[0, 0])
    else:
        segment = None if mode == "frames" else 200
        loader = FrameBatches(index_path, "train", 4096, seed=0, segment_frames=segment)
        for x, y in loader.epoch(0):
            frames += x.shape[0] * x.shape[-1] if segment else x.shape[1]
            checksum += float(x.flat[0])
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": wall, "frames_per_s": frames / wall, "rss_after_imports_mb": baseline,
            "peak_rss_mb": _status_mb("VmHWM"), "peak_rss_since_start_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_loader(folder: Path, sizes: list[float]) -> dict:
    out = {}
    for hours in sizes:
        index = write_random_cache(folder / f"cache_{hours}h", hours)
        for mode in ("frames", "segments", "in_memory"):
            done = subprocess.run([sys.executable, __file__, "--loader-child", str(index), mode],
                                  capture_output=True, text=True, check=True)
            out[f"{hours}h_{mode}"] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=0.1, help="training audio to synthesize (h)")
    parser.add_argument("--loader-hours", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--skip", nargs="*", default=[], choices=["synthesis", "features", "loader"])
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--loader-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loader_child:
        print(json.dumps(loader_child(*args.loader_child)))
        return
    results = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        scratch = Path(scratch)
        if "synthesis" not in args.skip:
            results["synthesis"] = bench_synthesis(scratch, args.hours)
            print(json.dumps({"synthesis": results["synthesis"]}, indent=1), flush=True)
            if "features" not in args.skip:
                results["features"] = bench_features(scratch / "synth_j1" / "manifest.csv", scratch)
                print(json.dumps({"features": results["features"]}, indent=1), flush=True)
        if "loader" not in args.skip:
            results["loader"] = bench_loader(scratch, args.loader_hours)
            print(json.dumps({"loader": results["loader"]}, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
