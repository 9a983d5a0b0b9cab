"""Timing of training steps, shared by the training benchmarks."""

from __future__ import annotations

import time

import torch


def time_training_steps(step, device: torch.device, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per call of ``step``, over ``steps`` calls after two
    warm-up calls, the GPU's queue drained before and after on CUDA."""
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps
