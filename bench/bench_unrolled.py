"""Transcription speed of deep-unfolded MU (family ``unrolled``) against the plain MU of
the same dictionary (families ``nmf`` and ``nmfd``, 100 iterations, the study's default),
measured in one run on the same recording-length features.

    .venv/bin/python bench/bench_unrolled.py results/bench/unrolled.md
    .venv/bin/python bench/bench_unrolled.py results/bench/unrolled.md --device cuda

Rows: one per base family (nmf, nmfd at T = 5) and method; ``seconds_per_audio_minute``
is the median over ``--repeats`` runs of the family's transcriber (features in, 88 x
frames out) on ``--seconds`` of features (264 CQT bins at 43 frames per second, a
random 88-template dictionary and random sparse activations); ``speedup`` is the plain
MU's time over the unrolled model's. Speed does not depend on what the layers learned,
so the unrolled model is taken untrained.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from tables import write_table

from lowrank_amt import families
from lowrank_amt.factorization.unrolled_mu import UnrolledMU

FRAME_RATE, N_BINS = 22050 / 512, 264


def dictionary(base: str, time_extent: int, rng) -> np.ndarray:
    shape = (time_extent, N_BINS, 88) if base == "nmfd" else (N_BINS, 88)
    W = rng.random(shape).astype(np.float32) ** 4
    return W / W.reshape(-1, 88).sum(axis=0)


def features(seconds: float, rng) -> np.ndarray:
    n_frames = int(seconds * FRAME_RATE)
    H = (rng.random((88, n_frames)) < 0.03) * rng.random((88, n_frames))
    return (dictionary("nmf", 1, rng) @ H + 1e-3 * rng.random((N_BINS, n_frames))).astype(np.float32)


def timed(transcribe, V, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        transcribe(V)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device, rng = torch.device(args.device), np.random.default_rng(0)
    V, minutes = features(args.seconds, rng), args.seconds / 60
    rows = []
    for base in ("nmf", "nmfd"):
        W = dictionary(base, 5, rng)
        keys = np.arange(88)
        plain_family, plain_spec = families.resolve({"family": base, "time_extent": 5, "device": args.device,
                                                     "transcribe_iterations": args.iterations})
        plain = plain_family.transcriber({"W": W, "template_keys": keys}, plain_spec, device)
        family, spec = families.resolve({"family": "unrolled", "base": base, "time_extent": 5,
                                         "layers": args.layers, "device": args.device})
        model = UnrolledMU(plain_family.numerics, torch.from_numpy(W), keys, 1.0, args.layers, floor=1e-3)
        unrolled = family.transcriber(family.arrays_of(model, spec), spec, device)
        plain_seconds, unrolled_seconds = timed(plain, V, args.repeats), timed(unrolled, V, args.repeats)
        rows += [{"base": base, "method": f"plain MU, {args.iterations} iterations", "device": args.device,
                  "seconds_per_audio_minute": plain_seconds / minutes, "speedup": 1.0},
                 {"base": base, "method": f"unrolled, {args.layers} layers", "device": args.device,
                  "seconds_per_audio_minute": unrolled_seconds / minutes, "speedup": plain_seconds / unrolled_seconds}]
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
