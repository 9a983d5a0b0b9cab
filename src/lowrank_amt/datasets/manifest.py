"""The manifest: one CSV per dataset listing its tracks.

Columns (``constants.MANIFEST_COLUMNS``): track_id, split, audio_path, midi_path,
duration (s), instrument. A training recording may have no MIDI (an empty midi_path):
models learn from it through a teacher (``stages/train.py``). Relative paths are relative to
the manifest's folder, so a prepared dataset can be moved as a whole. A mixture's stems,
where a dataset has them, lie beside it: ``<mixture>.stems/<class>.wav`` or ``.flac``
(``stem_folder``, ``stem_paths``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import soundfile

from ..constants import MANIFEST_COLUMNS, SPLITS
from ..errors import LowrankAmtError
from ..runtime.io import atomic_path


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


def audio_duration(path: str | Path) -> float:
    """Duration in seconds (4 decimals) from the file's header, or an error naming the file."""
    try:
        return round(soundfile.info(str(path)).duration, 4)
    except Exception as exc:  # soundfile raises RuntimeError, LibsndfileError, TypeError...
        raise LowrankAmtError(f"audio file {path} cannot be read ({exc})") from exc


def stem_folder(audio_path: str | Path) -> Path:
    """The folder of a mixture's stems (the module's layout)."""
    return Path(audio_path).with_suffix(".stems")


def stem_paths(audio_path: str | Path) -> dict[str, Path]:
    """class -> stem recording of a mixture (the module's layout), empty if none."""
    folder = stem_folder(audio_path)
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in (".wav", ".flac")} if folder.is_dir() else {}
