"""Training cost of the networks trained here: seconds per epoch per hour of training audio,
for each architecture and size, on the CPU (and on CUDA where a GPU is present, with the
speedup over the CPU measured in the same run).

    .venv/bin/python bench/bench_networks.py results/bench/networks.md
    .venv/bin/python bench/bench_networks.py results/bench/networks.md --devices cpu cuda

Each row times ``--steps`` Adam steps of the training loss (``families/network.py``'s
``segment_loss``: note, onset and offset heads) on random CQT batches of the study's shape
(8 segments of 128 frames, 264 bins), after two warm-up steps, bfloat16 autocast on CUDA as
in training. ``seconds_per_epoch_per_hour``: wall seconds to pass one hour of audio (43.07
frames per second) through training once; ``cpu_seconds_per_epoch_per_hour``: the same in
process CPU time (all threads).
"""

from __future__ import annotations

import argparse

import torch
from tables import write_table
from timing import time_adam_steps

from lowrank_amt.deep.harmonic_net import n_parameters
from lowrank_amt.deep.learner import segment_loss
from lowrank_amt.families.network import network_of

FRAMES_PER_HOUR = 3600 * 22050 / 512
#: (architecture, channels, hidden): HarmonicNet at 8 and 16 channels, and the two
#: networks at about 0.3 M parameters, Onsets and Frames also at about 3.4 M
SIZES = [("harmonic_net", 8, 96), ("harmonic_net", 16, 96), ("onsets_frames", 8, 96), ("onsets_frames", 32, 384),
         ("harmonic_attention", 8, 96)]


def time_steps(model, device, steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per training step on a batch of 8 x 128 frames."""
    return time_adam_steps(model, segment_loss, device, steps, lr=1e-3, segments=8, frames=128,
                           bfloat16_on_cuda=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    args = parser.parse_args()
    rows = []
    for architecture, channels, hidden in SIZES:
        cpu_wall = None
        for name in args.devices:
            torch.manual_seed(0)
            model = network_of({"architecture": architecture, "n_bins": 264, "bins_per_semitone": 3, "fmin_midi": 21,
                                "channels": channels, "hidden": hidden})
            wall, cpu = time_steps(model, torch.device(name), args.steps)
            per_hour = FRAMES_PER_HOUR / (8 * 128)
            cpu_wall = wall if name == "cpu" else cpu_wall
            rows.append({"architecture": architecture, "channels": channels,
                         "hidden": hidden if architecture != "harmonic_net" else None,
                         "parameters": n_parameters(model), "device": name,
                         "seconds_per_epoch_per_hour": wall * per_hour, "cpu_seconds_per_epoch_per_hour": cpu * per_hour,
                         "speedup_vs_cpu": cpu_wall / wall if cpu_wall else None})
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
