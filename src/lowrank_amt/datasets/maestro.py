"""MAESTRO v3.0.0 (Hawthorne et al., ICLR 2019): recorded piano performances with aligned MIDI.

Two modes (``audio``):

- ``recorded``: the full archive (about 101 GB) with the real recordings;
- ``rendered``: only the MIDI archive (about 56 MB); every performance is rendered with
  fluidsynth at the study's sample rate — real music, 200 hours, without the large download.

The official split comes from ``maestro-v3.0.0.csv``. ``max_pieces_per_split`` and
``max_hours_per_split`` keep the first pieces of each split in the CSV's order, so a smaller
selection is always part of a larger one. ``path`` uses an already extracted copy instead of
downloading.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ..errors import LowrankAmtError
from ..param import Param
from . import options, rendering
from .download import download_dir, download_params, fetch_archive, manifest_path_of, remote
from .manifest import audio_duration, write_manifest

BASE_URL = "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0"
ROOT = "maestro-v3.0.0"  # top folder of both archives
METADATA = "maestro-v3.0.0.csv"
#: archive and SHA-256 per mode, as published in the download table of
#: https://magenta.tensorflow.org/datasets/maestro (cross-checked against a third-party
#: loader that pins the same values); a spec's ``checksums`` overrides them.
ARCHIVES = {
    "recorded": ("maestro-v3.0.0.zip",
                 "sha256:6680fea5be2339ea15091a249fbd70e49551246ddbd5ca50f1b2352c08c95291"),
    "rendered": ("maestro-v3.0.0-midi.zip",
                 "sha256:70470ee253295c8d2c71e6d9d4a815189e35c89624b76d22fce5a019d5dde12c"),
}
SPLITS = ("train", "validation", "test")

DESCRIPTION = "MAESTRO v3.0.0 piano performances with aligned MIDI."
PARAMS = (
    Param("audio", "recorded", type="string", enum=list(ARCHIVES),
          meaning="`recorded`: the real recordings (101 GB download); `rendered`: the MIDI archive (56 MB) "
                  "rendered with fluidsynth."),
    *download_params("the official location"),
    Param("max_pieces_per_split", None, type=["integer", "null"], minimum=1,
          meaning="Keep the first N pieces of each split (null = all)."),
    Param("max_hours_per_split", None, type=["number", "null"], exclusiveMinimum=0,
          meaning="Keep the first pieces of each split up to this many hours (null = all)."),
    Param("soundfont", "auto", type="string", meaning="Soundfont of the rendered mode."),
)


def read_metadata(root: Path) -> pd.DataFrame:
    """The official metadata table (one row per performance) of an extracted MAESTRO copy."""
    path = root / METADATA
    if not path.is_file():
        raise LowrankAmtError(f"MAESTRO folder {root} lacks {METADATA}; expected an extracted maestro-v3.0.0 "
                              f"folder (set 'datasets.<name>.path' to it, or leave it unset to download)")
    table = pd.read_csv(path)
    missing = {"split", "midi_filename", "audio_filename", "duration"} - set(table.columns)
    if missing:
        raise LowrankAmtError(f"{path} lacks column(s) {', '.join(sorted(missing))}")
    unknown = set(table["split"]) - set(SPLITS)
    if unknown:
        raise LowrankAmtError(f"{path} has unknown split(s) {sorted(unknown)}")
    return table


def select(table: pd.DataFrame, max_pieces: int | None, max_hours: float | None) -> pd.DataFrame:
    """The first pieces of each split (in table order), at most ``max_pieces`` of them and
    stopping once ``max_hours`` is reached (the piece crossing the limit is kept)."""
    keep = []
    for split in SPLITS:
        rows = table[table["split"] == split]
        if max_pieces is not None:
            rows = rows.iloc[:max_pieces]
        if max_hours is not None:
            before = rows["duration"].cumsum() - rows["duration"]  # hours before each piece
            rows = rows[before < max_hours * 3600.0]
        keep.append(rows)
    return pd.concat(keep).reset_index(drop=True)


def _track_id(midi_filename: str) -> str:
    path = Path(midi_filename)
    return f"{path.parent.name}_{path.stem}"  # the year folder keeps ids unique and readable


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """Download (or find) MAESTRO, render it in ``rendered`` mode, and write the manifest."""
    opts = options(PARAMS, spec)
    mode = opts["audio"]
    out_dir = Path(manifest_path).parent
    if opts["path"]:
        root = Path(opts["path"])
    else:
        filename, checksum = ARCHIVES[mode]
        url, checksum = remote(opts, filename, BASE_URL, checksum)
        root = fetch_archive(url, filename, checksum, download_dir(opts, out_dir),
                             opts["keep_archives"], log) / ROOT
    table = select(read_metadata(root), opts["max_pieces_per_split"], opts["max_hours_per_split"])
    soundfont = None
    if mode == "rendered":
        soundfont = rendering.find_soundfont(opts["soundfont"])
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)

    def make(row) -> dict:
        track_id = _track_id(row.midi_filename)
        midi = root / row.midi_filename
        if not midi.is_file():
            raise LowrankAmtError(f"MAESTRO MIDI file {midi} is missing")
        if soundfont is None:
            audio = root / row.audio_filename
            if not audio.is_file():
                raise LowrankAmtError(f"MAESTRO audio file {audio} is missing")
            duration, instrument = audio_duration(audio), "piano:recorded"
        else:
            audio = out_dir / "audio" / f"{track_id}.wav"
            duration = rendering.render(midi, audio, soundfont, sample_rate)
            instrument = f"piano:{soundfont.stem}"
        return {"track_id": track_id, "split": row.split, "audio_path": manifest_path_of(audio, out_dir),
                "midi_path": manifest_path_of(midi, out_dir), "duration": round(duration, 4), "instrument": instrument}

    log(f"MAESTRO ({mode}): {len(table)} pieces, {table['duration'].sum() / 3600:.2f} h, on {jobs} thread(s)")
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for n, row in enumerate(pool.map(make, table.itertuples()), 1):
            rows.append(row)
            if mode == "rendered":
                log(f"[{n}/{len(table)}] {row['track_id']} ({row['duration']:.1f} s)")
    write_manifest(rows, manifest_path)
