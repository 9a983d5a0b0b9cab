"""Dataset preparation: every preparer writes the same manifest format (see manifest.py)."""
