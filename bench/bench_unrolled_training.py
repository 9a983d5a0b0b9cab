"""Training cost of the unrolled hybrid (family ``unrolled``, base nmfd) per hour of
training audio, before and after issue 29's changes, measured in one run on the pianos
study's features (run `make pianos`, or its data and features, first):

    .venv/bin/python bench/bench_unrolled_training.py results/bench/unrolled_training.md
    .venv/bin/python bench/bench_unrolled_training.py out.md --hours 0.3 --device cuda

Rows, each a full training (the isolated-note dictionary, the epochs, early stopping on
the validation loss) of ``--hours`` of the study's training pieces, on one thread:
- ``before``: every training frame once per epoch, NMFD's reconstruction and its adjoint
  as one matrix product per lag and a shifted sum (the form before issue 29, kept here);
- ``convolution``: the same schedule, with the library's 1-D convolutions;
- ``after``: the convolutions and ``--steps`` batches of random segments per epoch, at
  most 15 epochs at a learning rate of 0.03, as config/pianos.yaml's ``unrolled_nmfd_fast``;
- ``after, bin gains``: the same with the learned bin gains (``unrolled_nmfd_gains``).
``cpu_s_per_training_hour`` is the training's CPU seconds (train.json) over ``--hours``;
``speedup`` the before row's over each row's; ``validation_note_f`` the best epoch's, so
that a cheaper training is seen to learn as much.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from tables import write_table

from lowrank_amt.factorization import nmfd
from lowrank_amt.runtime.io import read_json
from lowrank_amt.stages.train import train

INDEX = "results/pianos/features/synth_pianos/cqt/index.csv"
SPEC = {"family": "unrolled", "base": "nmfd", "time_extent": 5, "layers": 10}


def per_lag_reconstruct(W, activations):
    """sum_t W[t] @ shift(H, t) as one matmul for every lag and a shifted sum."""
    H = activations["H"]
    T, F, K = W.shape
    per_lag = (W.reshape(T * F, K) @ H).unflatten(-2, (T, F))
    V_hat = per_lag[..., 0, :, :].clone()
    for t in range(1, T):
        V_hat[..., t:] += per_lag[..., t, :, :-t] if t < H.shape[-1] else 0
    return V_hat


def per_lag_adjoint(W, R):
    T, F, K = W.shape
    per_lag = (W.permute(0, 2, 1).reshape(T * K, F) @ R).unflatten(-2, (T, K))
    out = per_lag[..., 0, :, :].clone()
    for t in range(1, min(T, R.shape[-1])):
        out[..., :-t] += per_lag[..., t, :, t:]
    return out


@contextlib.contextmanager
def per_lag_products():
    saved = nmfd.reconstruct, nmfd._adjoint_H
    nmfd.reconstruct, nmfd._adjoint_H = per_lag_reconstruct, per_lag_adjoint
    try:
        yield
    finally:
        nmfd.reconstruct, nmfd._adjoint_H = saved


def trained(spec, index, hours, out: Path) -> dict:
    start = time.perf_counter()
    train(spec, index, out / "model.npz", out / "loss.csv", out / "train.json", log=lambda m: None,
          train_hours=hours)
    info = read_json(out / "train.json")
    losses = pd.read_csv(out / "loss.csv")
    best = losses[(losses["split"] == "validation") & (losses["epoch"] == info["best_epoch"])]
    return {"cpu_s_per_training_hour": info["train_cpu_seconds"] / hours, "epochs": info["epochs"],
            "validation_note_f": float(best["validation_note_f"].iloc[0]), "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--index", default=INDEX)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=32, help="steps_per_epoch of the 'after' rows")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fast = {"steps_per_epoch": args.steps, "epochs": 15, "patience": 4, "learning_rate": 0.03}
    forms = [("before", {}, per_lag_products), ("convolution", {}, contextlib.nullcontext),
             ("after", fast, contextlib.nullcontext),
             ("after, bin gains", {**fast, "learn_bin_gains": True}, contextlib.nullcontext)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes, kernels in forms:
            with kernels():
                result = trained({**SPEC, **changes, "device": args.device}, args.index, args.hours, Path(tmp) / name)
            rows.append({"form": name, "device": args.device, "hours": args.hours, **result})
            print(rows[-1], flush=True)
    for row in rows:
        row["speedup"] = rows[0]["cpu_s_per_training_hour"] / row["cpu_s_per_training_hour"]
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
