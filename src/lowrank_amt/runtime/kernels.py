"""The same float kernels on every x86-64 CPU, so that a study's figures reproduce.

PyTorch picks its vector kernels by the CPU it runs on: ATen's elementwise and reduction
kernels (AVX2 or AVX-512) and oneDNN's convolutions. The two round differently, so a
network trained on an AVX-512 machine ends with other weights than on an AVX2 machine
(``harmonic_net`` moved by up to 0.03 note F in the default study). Every
``lowrank-amt`` command therefore asks for the AVX2 kernels, which every x86-64 CPU of
the last decade has: with them an AVX-512 machine reproduced every row of the README's
default-study table exactly, and trained the network no slower (README, Reproducibility).

The matrix products and vector math (MKL) are left to the CPU: MKL takes AVX-512 on
Intel and another path on AMD, and only ``MKL_CBWR=COMPATIBLE`` made the two agree, at
four times a product's time (README, Reproducibility; ``bench/kernel_hashes.py``).
A variable already set wins, so ``ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL``
gives the CPU's own kernels back. Other processors (Arm) keep theirs.
"""

from __future__ import annotations

import os
import platform

#: Environment variables read by torch at its first kernel call, and their pinned values.
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_kernels(environ=os.environ, machine: str | None = None) -> dict:
    """Set ``PINNED_KERNELS`` in ``environ`` where unset, on x86-64; returns what was set."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return {}
    pinned = {key: value for key, value in PINNED_KERNELS.items() if key not in environ}
    environ.update(pinned)
    return pinned
