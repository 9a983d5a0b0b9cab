"""Your own recordings: any folder of audio files, each with a same-named MIDI file.

``path`` is searched recursively for audio files (``audio_extensions``); ``song.wav`` needs
``song.mid`` or ``song.midi`` beside it, except in the training split, whose recordings
may have none (models learn from those through a teacher, ``stages/train.py``). Every track
goes to ``split`` (``test`` by default, to evaluate trained models on your music), or,
with ``split: folders``, to the split named by its first-level subfolder
(``<path>/train/...``, ``<path>/validation/...``, ``<path>/test/...``). Files stay where
they are; the manifest refers to them by absolute path. Stereo files and other sample
rates are handled when the audio is loaded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..constants import SPLITS
from ..errors import LowrankAmtError
from ..param import Param
from . import options
from .manifest import audio_duration, write_manifest

SPLIT_FROM_FOLDERS = "folders"
DESCRIPTION = "Your own recordings, audio files beside same-named MIDI files."
PARAMS = (
    Param("path", None, type="string", required=True, meaning="Folder of audio files and same-named .mid/.midi files."),
    Param("split", "test", type="string", enum=[*SPLITS, SPLIT_FROM_FOLDERS],
          meaning="One split for every track, or `folders`: the split named by each track's top-level subfolder."),
    Param("instrument", "unknown", type="string", meaning="Instrument label written to the manifest."),
    Param("audio_extensions", [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"], type="array", items={"type": "string"},
          meaning="File endings that count as audio."),
)
MIDI_SUFFIXES = (".mid", ".midi", ".MID", ".MIDI")


def find_pairs(root: Path, extensions: list[str]) -> list[tuple[Path, Path | None]]:
    """(audio, MIDI or None) pairs under ``root`` in path order."""
    wanted = {e.lower() for e in extensions}
    audio = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    if not audio:
        raise LowrankAmtError(f"no audio files ({', '.join(sorted(wanted))}) under {root}")
    return [(path, next((path.with_suffix(s) for s in MIDI_SUFFIXES if path.with_suffix(s).is_file()), None))
            for path in audio]


def refuse_orphans(orphans: list[Path]) -> None:
    """Validation and test recordings need their MIDI (training ones may go without: a
    teacher annotates them)."""
    if orphans:
        shown = ", ".join(str(p) for p in orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
        raise LowrankAmtError(f"audio file(s) without a same-named .mid/.midi file: {shown} (only training "
                              "recordings may lack one; models learn from them through a 'teacher')")


def track_id_of(audio: Path, root: Path) -> str:
    """The path below ``root`` without its extension, folders joined by '_'."""
    return "_".join(audio.relative_to(root).with_suffix("").parts)


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """List the folder's (audio, MIDI) pairs with their durations in the manifest."""
    opts = options(PARAMS, spec)
    if not opts["path"]:
        raise LowrankAmtError("dataset kind 'folder' needs 'datasets.<name>.path': a folder of audio and MIDI files")
    root = Path(opts["path"]).resolve()
    if not root.is_dir():
        raise LowrankAmtError(f"folder {root} (datasets.<name>.path) does not exist")
    split = opts["split"]
    pairs = find_pairs(root, opts["audio_extensions"])

    rows, seen, orphans = [], {}, []
    for audio, midi in pairs:
        track_id = track_id_of(audio, root)
        if track_id in seen:
            raise LowrankAmtError(f"{audio} and {seen[track_id]} would both be track {track_id!r}; rename one")
        seen[track_id] = audio
        track_split = split
        if split == SPLIT_FROM_FOLDERS:
            track_split = audio.relative_to(root).parts[0]
            if track_split not in SPLITS or len(audio.relative_to(root).parts) < 2:
                raise LowrankAmtError(f"{audio} is not inside a split folder ({', '.join(SPLITS)}) of {root}, "
                                      f"as 'split: {SPLIT_FROM_FOLDERS}' requires")
        if midi is None and track_split != "train":
            orphans.append(audio)
        rows.append({"track_id": track_id, "split": track_split, "audio_path": str(audio),
                     "midi_path": str(midi or ""), "duration": None, "instrument": opts["instrument"]})
    refuse_orphans(orphans)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for row, seconds in zip(rows, pool.map(audio_duration, [r["audio_path"] for r in rows])):
            row["duration"] = seconds
    log(f"folder {root}: {len(rows)} tracks, {sum(r['duration'] for r in rows) / 3600:.2f} h")
    write_manifest(rows, manifest_path)
