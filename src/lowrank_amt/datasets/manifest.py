"""The manifest: one CSV per dataset listing its tracks.

Columns (``constants.MANIFEST_COLUMNS``): track_id, split, audio_path, midi_path,
duration (s), instrument. A training recording may have no MIDI (an empty midi_path):
models learn from it through a teacher (``stages/train.py``). Relative paths are relative to
the manifest's folder, so a prepared dataset can be moved as a whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..constants import MANIFEST_COLUMNS, SPLITS
from ..errors import LowrankAmtError
from ..io import atomic_path


def write_manifest(rows: list[dict], path: str | Path) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def read_manifest(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read a manifest, resolve its paths, optionally keep one split."""
    path = Path(path)
    if not path.exists():
        raise LowrankAmtError(f"manifest {path} does not exist; prepare the dataset first")
    table = pd.read_csv(path, dtype={"track_id": str, "split": str})
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise LowrankAmtError(f"manifest {path} lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(table["split"]) - set(SPLITS))
    if unknown:
        raise LowrankAmtError(f"manifest {path} has unknown split(s) {unknown}; expected {SPLITS}")
    for column in ("audio_path", "midi_path"):  # an empty midi_path: a recording without annotation
        table[column] = ["" if pd.isna(p) or p == "" else str(p if Path(p).is_absolute() else path.parent / p)
                         for p in table[column]]
    if split is not None:
        table = table[table["split"] == split].reset_index(drop=True)
    return table
