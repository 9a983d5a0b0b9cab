"""GuitarSet (Xi et al., ISMIR 2018): 360 excerpts of solo acoustic guitar, about 30 s each,
annotated string by string from a hexaphonic pickup (JAMS files).

Downloaded from Zenodo record 3371780 (MD5 checksums as published there): the annotation
archive plus one mono audio archive, ``audio: mic`` (reference microphone) or ``mix``
(pickup downmix). The six per-string ``note_midi`` annotations of each excerpt are merged
into one MIDI file. GuitarSet has no official split; the players in ``test_players`` and
``validation_players`` form those splits, the others train (one player per fold is the
common protocol). JAMS files are read as JSON, without the jams package.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import LowrankAmtError
from ..evaluation.notes import write_midi_notes
from ..param import Param
from . import options
from .download import download_dir, download_params, fetch_archive, manifest_path_of, remote
from .manifest import audio_duration, write_manifest

BASE_URL = "https://zenodo.org/records/3371780/files"
#: archive -> checksum published on the Zenodo record (also pinned by mirdata's loader).
ARCHIVES = {
    "annotation.zip": "md5:b39b78e63d3446f2e54ddb7a54df9b10",
    "audio_mono-mic.zip": "md5:275966d6610ac34999b58426beb119c3",
    "audio_mono-pickup_mix.zip": "md5:aecce79f425a44e2055e46f680e10f6a",
}
AUDIO = {"mic": "audio_mono-mic.zip", "mix": "audio_mono-pickup_mix.zip"}
GUITAR_PROGRAM = 25  # General MIDI acoustic guitar (steel)

DESCRIPTION = "GuitarSet solo guitar excerpts with string-wise note annotations."
PLAYERS = {"type": "array", "items": {"type": "string", "pattern": "^0[0-5]$"}}
PARAMS = (
    Param("audio", "mic", type="string", enum=list(AUDIO),
          meaning="Reference microphone (`mic`) or pickup downmix (`mix`)."),
    *download_params("Zenodo"),
    Param("test_players", ["05"], **PLAYERS, meaning="Players of the test split."),
    Param("validation_players", ["04"], **PLAYERS, meaning="Players of the validation split."),
)


def read_jams_notes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Intervals (n, 2) and rounded MIDI pitches (n,) of every ``note_midi`` annotation of a
    JAMS file, sorted by onset. Observations may be a list of records (JAMS >= 0.3) or
    columns of arrays (older files)."""
    path = Path(path)
    try:
        jam = json.loads(path.read_text())
        notes = []
        for annotation in jam["annotations"]:
            if annotation.get("namespace") != "note_midi":
                continue
            data = annotation["data"]
            if isinstance(data, dict):
                data = [dict(zip(data, values)) for values in zip(*data.values())]
            notes += [(float(o["time"]), float(o["time"]) + float(o["duration"]), int(round(float(o["value"]))))
                      for o in data]
    except (ValueError, KeyError, TypeError) as exc:
        raise LowrankAmtError(f"JAMS file {path} cannot be read as note annotations ({exc!r})") from exc
    notes.sort()
    intervals = np.array([n[:2] for n in notes], dtype=float).reshape(-1, 2)
    return intervals, np.array([n[2] for n in notes], dtype=int)


def _split(track_id: str, opts: dict) -> str:
    player = track_id.split("_", 1)[0]
    if player in opts["test_players"]:
        return "test"
    return "validation" if player in opts["validation_players"] else "train"


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """Download (or find) GuitarSet, convert its JAMS annotations to MIDI, write the manifest."""
    opts = options(PARAMS, spec)
    overlap = set(opts["test_players"]) & set(opts["validation_players"])
    if overlap:
        raise LowrankAmtError(f"GuitarSet player(s) {sorted(overlap)} are in both test_players and validation_players")
    out_dir = Path(manifest_path).parent
    if opts["path"]:
        root = Path(opts["path"])
        if not root.is_dir():
            raise LowrankAmtError(f"GuitarSet folder {root} does not exist")
        annotation_dir = audio_dir = root
    else:
        folders = {}
        for filename in ("annotation.zip", AUDIO[opts["audio"]]):
            url, checksum = remote(opts, filename, BASE_URL, ARCHIVES[filename])
            folders[filename] = fetch_archive(url, filename, checksum, download_dir(opts, out_dir),
                                              opts["keep_archives"], log)
        annotation_dir, audio_dir = folders["annotation.zip"], folders[AUDIO[opts["audio"]]]
    jams = sorted(annotation_dir.rglob("*.jams"))
    if not jams:
        raise LowrankAmtError(f"no GuitarSet annotations (*.jams) under {annotation_dir}")
    audio = {p.name: p for p in audio_dir.rglob(f"*_{opts['audio']}.wav")}

    def make(jam: Path) -> dict:
        track_id = jam.stem
        wav = audio.get(f"{track_id}_{opts['audio']}.wav")
        if wav is None:
            raise LowrankAmtError(f"GuitarSet audio {track_id}_{opts['audio']}.wav is missing under {audio_dir}")
        intervals, pitches = read_jams_notes(jam)
        write_midi_notes(out_dir / "midi" / f"{track_id}.mid", intervals, pitches, program=GUITAR_PROGRAM)
        return {"track_id": track_id, "split": _split(track_id, opts), "audio_path": manifest_path_of(wav, out_dir),
                "midi_path": f"midi/{track_id}.mid", "duration": audio_duration(wav),
                "instrument": f"guitar:{opts['audio']}"}

    log(f"GuitarSet ({opts['audio']}): {len(jams)} excerpts on {jobs} thread(s)")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(make, jams))
    write_manifest(rows, manifest_path)
