"""Training cost of the convolutive hybrid's variants (family ``unrolled``, base nmfd):
seconds per training step and for the long schedule's whole budget, on the CPU (and on CUDA
where a GPU is present, with the speedup over the CPU measured in the same run).

    .venv/bin/python bench/bench_unrolled_steps.py results/bench/unrolled_steps.md
    .venv/bin/python bench/bench_unrolled_steps.py results/bench/unrolled_steps.md --devices cpu cuda

Each row times ``--steps`` Adam steps of the training loss (``families/unrolled.py``: note
and onset cross-entropies plus 0.1 times the reconstruction) on random batches of the
study's shape (16 segments of 64 frames, 264 bins; a random dictionary of 88 templates of
5 frames), after two warm-up steps, in float32. ``budget_seconds``: the long schedule's
1,440 steps (48 per epoch, 30 epochs), without the validation passes and the isolated-note
dictionary, which the study's CPU seconds include. The variants: bin gains (the long
schedule's model), with untied layers, with the recording's adaptation.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tables import write_table
from timing import time_adam_steps

from lowrank_amt.deep.harmonic_net import n_parameters, transcription_loss
from lowrank_amt.factorization import nmfd
from lowrank_amt.factorization.unrolled_mu import UnrolledMU

BUDGET_STEPS = 48 * 30
VARIANTS = {"gains": {}, "gains + untied layers": {"untie_layers": True},
            "gains + recording adaptation": {"adapt_recording": True}}


def model_of(parts: dict) -> UnrolledMU:
    W = torch.rand(5, 264, 88, generator=torch.Generator().manual_seed(0))
    W /= W.reshape(-1, 88).sum(dim=0)
    return UnrolledMU(nmfd, W, np.arange(88), 1.0, layers=10, floor=1e-3, learn_bin_gains=True, **parts)


def hybrid_loss(model, features, roll):
    """The training loss of ``families/unrolled.py``."""
    note, onset, reconstruction = model.outputs(features)
    return transcription_loss(note, onset, roll, True) + 0.1 * reconstruction


def time_steps(model, device, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per training step on a batch of 16 x 64 frames."""
    return time_adam_steps(model, hybrid_loss, device, steps, lr=0.01, segments=16, frames=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    args = parser.parse_args()
    rows = []
    for variant, parts in VARIANTS.items():
        cpu_wall = None
        for name in args.devices:
            torch.manual_seed(0)
            model = model_of(parts)
            wall, cpu = time_steps(model, torch.device(name), args.steps)
            cpu_wall = wall if name == "cpu" else cpu_wall
            rows.append({"variant": variant, "parameters": n_parameters(model), "device": name,
                         "seconds_per_step": round(wall, 4),
                         "cpu_seconds_per_step": round(cpu, 4), "budget_seconds": round(wall * BUDGET_STEPS, 1),
                         "speedup_over_cpu": round(cpu_wall / wall, 2) if cpu_wall else None})
            print(rows[-1], flush=True)
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
