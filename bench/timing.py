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


def time_adam_steps(model, loss_of, device: torch.device, steps: int, lr: float, segments: int, frames: int,
                    bfloat16_on_cuda: bool = False) -> tuple[float, float]:
    """``time_training_steps`` of Adam steps on ``loss_of(model, features, roll)`` for a
    random batch of ``segments`` x ``frames`` frames of 264 CQT bins and a sparse roll
    (bfloat16 autocast on CUDA if asked, as the networks train)."""
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    features = torch.rand(segments, 264, frames, device=device)
    roll = (torch.rand(segments, 88, frames, device=device) < 0.05).to(torch.uint8)
    mixed = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bfloat16_on_cuda and device.type == "cuda")

    def step():
        with mixed:
            loss = loss_of(model, features, roll)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return time_training_steps(step, device, steps)
