"""Low-rank factorizations on one PyTorch core (core.py)."""
