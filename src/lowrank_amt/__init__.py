"""lowrank-amt: interpretable low-rank models for automatic music transcription,
trained batch-wise over whole datasets and benchmarked against deep baselines."""

import os

# PyTorch's CPU allocator backs large tensors with transparent huge pages when this is
# set (read once, at its first allocation, so it must precede any torch import). The
# factorization core allocates several spectrogram-sized temporaries per iteration;
# with 4 KiB pages their page faults cost about as much as the arithmetic (a full-batch
# KL iteration on 264 x 200000 features: about 1.0 s -> 0.7 s on 2 cores; see README).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
