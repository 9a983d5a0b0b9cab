"""Where a model runs: the torch device a spec's ``device`` key names."""

from __future__ import annotations

import torch

from ..errors import LowrankAmtError


def pick_device(setting: str = "auto") -> torch.device:
    """``auto`` takes CUDA when this process sees a GPU, else the CPU."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise LowrankAmtError("config asks for device 'cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
