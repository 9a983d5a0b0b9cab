"""MAPS (Emiya, Badeau & David, 2010): piano recordings with text annotations.

MAPS needs registration, so it is never downloaded: ``path`` names the folder holding one
subfolder per piano (``<path>/<piano>/MUS/MAPS_MUS-<piece>_<piano>.wav`` with a ``.txt``
beside each, and ``<path>/<piano>/ISOL/NO/...`` for isolated notes).

The usual configuration (Sigtia et al. 2016, Hawthorne et al. 2018): the two real
Disklavier pianos ENSTDkCl and ENSTDkAm are the test set; the seven synthesized pianos give
training and validation (``validation_pianos`` are held out from training); pieces that also
occur in the test set are removed from training and validation
(``exclude_test_pieces``). The ISOL/NO notes of the training pianos form the ``isolated``
split for template learning. Audio stays where it is (absolute paths); each text
annotation is converted to a MIDI file beside the manifest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import LowrankAmtError
from ..evaluation.notes import write_midi_notes
from ..param import Param
from . import options
from .manifest import audio_duration, write_manifest

SYNTHESIZED_PIANOS = ("AkPnBcht", "AkPnBsdf", "AkPnCGdD", "AkPnStgb", "SptkBGAm", "SptkBGCl", "StbgTGd2")
RECORDED_PIANOS = ("ENSTDkAm", "ENSTDkCl")

#: A list of MAPS piano folder names, as JSON Schema.
PIANOS = {"type": "array", "items": {"type": "string", "enum": sorted(SYNTHESIZED_PIANOS + RECORDED_PIANOS)}}

DESCRIPTION = "MAPS piano dataset (local copy; registration required)."
PARAMS = (
    Param("path", None, type="string", required=True, meaning="The unpacked MAPS folder (one folder per piano)."),
    Param("test_pianos", ["ENSTDkCl", "ENSTDkAm"], **PIANOS, meaning="Pianos of the test split."),
    Param("validation_pianos", ["SptkBGCl"], **PIANOS, meaning="Pianos of the validation split."),
    Param("train_pianos", [p for p in SYNTHESIZED_PIANOS if p != "SptkBGCl"], **PIANOS,
          meaning="Pianos of the training split."),
    Param("isolated_pianos", None, **{**PIANOS, "type": ["array", "null"]},
          meaning="Pianos whose ISOL/NO notes form the isolated split (null = the training pianos; [] for none)."),
    Param("exclude_test_pieces", True, type="boolean",
          meaning="Drop pieces also in the test split from training and validation."),
)


def read_maps_annotation(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Intervals (n, 2) in seconds and MIDI pitches (n,) of a MAPS ``.txt`` file
    (a header line, then ``OnsetTime OffsetTime MidiPitch`` per note, tab-separated)."""
    path = Path(path)
    lines = path.read_text(errors="replace").splitlines()
    if not lines or lines[0].split()[:3] != ["OnsetTime", "OffsetTime", "MidiPitch"]:
        raise LowrankAmtError(f"MAPS annotation {path} does not start with the header 'OnsetTime OffsetTime MidiPitch'")
    intervals, pitches = [], []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields:
            continue
        try:
            onset, offset, pitch = float(fields[0]), float(fields[1]), int(fields[2])
        except (ValueError, IndexError):
            raise LowrankAmtError(f"MAPS annotation {path} line {number} is not 'onset offset pitch': "
                                  f"{line!r}") from None
        if offset <= onset:
            raise LowrankAmtError(f"MAPS annotation {path} line {number} ends before it starts: {line!r}")
        intervals.append((onset, offset))
        pitches.append(pitch)
    return np.array(intervals, dtype=float).reshape(-1, 2), np.array(pitches, dtype=int)


def piece_name(wav: Path) -> str:
    """``MAPS_MUS-alb_esp2_AkPnCGdD.wav`` -> ``alb_esp2`` (the piece, whatever the piano)."""
    return wav.stem.removeprefix("MAPS_MUS-").rsplit("_", 1)[0]


def _wavs(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def check_layout(root: Path, pianos: list[str]) -> None:
    """Every piano folder the configuration needs exists and holds annotated MUS pieces."""
    if not root.is_dir():
        raise LowrankAmtError(f"MAPS folder {root} does not exist; set 'datasets.<name>.path' to the unpacked MAPS "
                              f"(one subfolder per piano, e.g. {root}/ENSTDkCl/MUS)")
    missing = [str(root / p / "MUS") for p in pianos if not _wavs(root / p / "MUS", "MAPS_MUS-*.wav")]
    if missing:
        raise LowrankAmtError(f"MAPS folder {root} lacks {', '.join(missing)} (expected MAPS_MUS-*.wav files there; "
                              f"layout <path>/<piano>/MUS/MAPS_MUS-<piece>_<piano>.wav with a .txt beside each)")


def _tracks(root: Path, opts: dict) -> list[tuple[str, str, Path, str]]:
    """(split, track_id, wav, piano) for every selected recording."""
    by_split = {"test": opts["test_pianos"], "validation": opts["validation_pianos"], "train": opts["train_pianos"]}
    check_layout(root, [p for pianos in by_split.values() for p in pianos])
    test_pieces = {piece_name(w) for p in opts["test_pianos"] for w in _wavs(root / p / "MUS", "MAPS_MUS-*.wav")}
    tracks = []
    for split in ("train", "validation", "test"):
        for piano in by_split[split]:
            for wav in _wavs(root / piano / "MUS", "MAPS_MUS-*.wav"):
                if split != "test" and opts["exclude_test_pieces"] and piece_name(wav) in test_pieces:
                    continue
                tracks.append((split, wav.stem.removeprefix("MAPS_"), wav, piano))
    isolated = opts["isolated_pianos"] if opts["isolated_pianos"] is not None else opts["train_pianos"]
    for piano in isolated:
        wavs = _wavs(root / piano / "ISOL" / "NO", "MAPS_ISOL_NO_*.wav")
        if not wavs:
            raise LowrankAmtError(f"MAPS folder {root} lacks isolated notes {root / piano / 'ISOL' / 'NO'}/"
                                  f"MAPS_ISOL_NO_*.wav (set 'isolated_pianos' to the pianos you have, or [] for none)")
        tracks += [("isolated", wav.stem.removeprefix("MAPS_"), wav, piano) for wav in wavs]
    return tracks


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """Convert the selected MAPS annotations to MIDI and write the manifest."""
    opts = options(PARAMS, spec)
    if not opts["path"]:
        raise LowrankAmtError("MAPS needs 'datasets.<name>.path': the folder of the unpacked MAPS (registration "
                              "required, see https://adasp.telecom-paris.fr/resources/2010-07-08-maps-database/)")
    root = Path(opts["path"]).resolve()
    out_dir = Path(manifest_path).parent
    tracks = _tracks(root, opts)

    def make(track) -> dict:
        split, track_id, wav, piano = track
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            raise LowrankAmtError(f"MAPS recording {wav} has no annotation {txt.name} beside it")
        intervals, pitches = read_maps_annotation(txt)
        write_midi_notes(out_dir / "midi" / f"{track_id}.mid", intervals, pitches)
        return {"track_id": track_id, "split": split, "audio_path": str(wav),
                "midi_path": f"midi/{track_id}.mid", "duration": audio_duration(wav),
                "instrument": f"piano:{piano}"}

    log(f"MAPS: {len(tracks)} recordings from {root} on {jobs} thread(s)")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(make, tracks))
    write_manifest(rows, manifest_path)
