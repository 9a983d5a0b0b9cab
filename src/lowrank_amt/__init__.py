"""lowrank-amt: interpretable low-rank models for automatic music transcription,
trained batch-wise over whole datasets and benchmarked against deep baselines."""

__version__ = "0.1.0"
