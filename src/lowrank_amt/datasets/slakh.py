"""Slakh2100 (Manilow et al., WASPAA 2019): multitrack songs rendered from Lakh MIDI with
sampled instruments, one MIDI file and one audio stem per instrument.

Downloaded from Zenodo (MD5 as published there): ``version: 2100-redux`` (the deduplicated
release, 1710 songs in train/validation/test folders; the ``omitted`` folder is skipped) or
``baby`` (20 songs at 16 kHz, no split: every song goes to ``split``). Each song's notes are
the per-stem MIDI files of its pitched, rendered stems (drums never), optionally only those
whose ``inst_class`` (metadata.yaml) is in ``instrument_classes``; they are merged into one
MIDI file per song. ``audio: mix`` keeps the full mixture (other instruments included),
``audio: stems`` writes the sum of the selected stems so that audio and notes match, and
beside it each instrument class's stems summed (``audio/<id>.stems/<class>.flac``, the
class of a stem's program, ``instruments.py``), against which separation is scored.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile
import yaml

from ..constants import SPLITS
from ..errors import LowrankAmtError
from ..instruments import instrument_class
from ..param import Param
from ..runtime.io import atomic_path
from . import options
from .download import download_dir, download_params, fetch_archive, manifest_path_of, remote
from .manifest import audio_duration, stem_folder, write_manifest

#: version -> (archive, checksum published on its Zenodo record, official folder).
VERSIONS = {
    "2100-redux": ("slakh2100_flac_redux.tar.gz", "md5:f4b71b6c45ac9b506f59788456b3f0c4",
                   "https://zenodo.org/records/4599666/files"),
    "baby": ("babyslakh_16k.tar.gz", "md5:311096dc2bde7d61c97e930edbfc7f78",
             "https://zenodo.org/records/4603870/files"),
}
AUDIO_SUFFIXES = (".flac", ".wav")

DESCRIPTION = "Slakh2100 multitrack songs rendered from MIDI."
PARAMS = (
    Param("version", "2100-redux", type="string", enum=list(VERSIONS), meaning="Which release."),
    Param("audio", "mix", type="string", enum=["mix", "stems"],
          meaning="`mix`: the full mixture; `stems`: the sum of the selected stems, so audio and notes match."),
    Param("instrument_classes", None, type=["array", "null"], items={"type": "string"},
          meaning="Slakh inst_class names whose notes (and stems) are kept (null = every pitched stem)."),
    Param("split", "test", type="string", enum=list(SPLITS),
          meaning="Split of songs outside a split folder (baby release)."),
    Param("max_pieces_per_split", None, type=["integer", "null"], minimum=1,
          meaning="Keep the first N songs of each split (null = all)."),
    *download_params("the release's Zenodo record"),
)


def _audio_file(stem_path: Path) -> Path | None:
    return next((stem_path.with_suffix(s) for s in AUDIO_SUFFIXES if stem_path.with_suffix(s).is_file()), None)


def select_stems(metadata: dict, classes: list[str] | None) -> list[tuple[str, dict]]:
    """(stem id, stem metadata) of the pitched stems that were rendered and saved as MIDI,
    restricted to ``classes`` (compared case-insensitively) when given."""
    wanted = None if classes is None else {c.lower() for c in classes}
    return [(name, stem) for name, stem in sorted((metadata.get("stems") or {}).items())
            if not stem.get("is_drum", False) and stem.get("audio_rendered", True) and stem.get("midi_saved", True)
            and (wanted is None or str(stem.get("inst_class", "")).lower() in wanted)]


def merge_stem_midi(paths_and_programs: list[tuple[Path, int]], dest: Path) -> None:
    """One MIDI file holding the notes of every given stem, each as an instrument with its
    program number (times in seconds are kept; the file uses a fine 0.5 ms tick)."""
    merged = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    for path, program in paths_and_programs:
        try:
            stem = pretty_midi.PrettyMIDI(str(path))
        except Exception as exc:  # pretty_midi raises many kinds on a corrupt file
            raise LowrankAmtError(f"Slakh MIDI file {path} cannot be read ({exc})") from exc
        for inst in stem.instruments:
            if not inst.is_drum:
                copy = pretty_midi.Instrument(program=int(program), name=path.stem)
                copy.notes = inst.notes
                merged.instruments.append(copy)
    with atomic_path(dest) as tmp:
        merged.write(str(tmp))


def _songs(root: Path, default_split: str) -> list[tuple[str, Path]]:
    """(split, song folder) of every song under ``root``, in name order."""
    songs = []
    # <root>[/<archive folder>][/<split>]/TrackNNNNN: an extracted archive or a given path
    metas = [m for depth in ("", "*/", "*/*/") for m in sorted(root.glob(f"{depth}Track*/metadata.yaml"))]
    for meta in metas:
        folder = meta.parent
        group = folder.parent.name
        if group == "omitted":  # duplicates removed from Slakh2100 in the redux release
            continue
        songs.append((group if group in ("train", "validation", "test") else default_split, folder))
    if not songs:
        raise LowrankAmtError(f"no Slakh songs under {root} (expected [<split>/]TrackNNNNN/metadata.yaml "
                              f"there or one folder below)")
    return songs


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """Download (or find) Slakh, merge each song's selected stems into one MIDI file (and
    their audio, with ``audio: stems``), and write the manifest."""
    opts = options(PARAMS, spec)
    out_dir = Path(manifest_path).parent
    if opts["path"]:
        root = Path(opts["path"])
    else:
        filename, checksum, base = VERSIONS[opts["version"]]
        url, checksum = remote(opts, filename, base, checksum)
        root = fetch_archive(url, filename, checksum, download_dir(opts, out_dir), opts["keep_archives"], log)
    songs = _songs(root, opts["split"])
    if opts["max_pieces_per_split"] is not None:
        kept = {s: [f for t, f in songs if t == s][: opts["max_pieces_per_split"]] for s in SPLITS}
        songs = [(s, f) for s, f in songs if f in kept[s]]

    def make(song) -> dict | None:
        split, folder = song
        track_id = folder.name
        metadata = yaml.safe_load((folder / "metadata.yaml").read_text())
        stems = select_stems(metadata, opts["instrument_classes"])
        if not stems:  # e.g. a drum-only song
            return None
        lacking = [name for name, _ in stems if not (folder / "MIDI" / f"{name}.mid").is_file()]
        if lacking:  # its notes would be missing from the song's reference
            raise LowrankAmtError(f"Slakh song {folder}: stem {lacking[0]} is rendered but {folder / 'MIDI'} "
                                  f"lacks {lacking[0]}.mid; restore it, or leave its class out (instrument_classes)")
        merge_stem_midi([(folder / "MIDI" / f"{name}.mid", stem.get("program_num", 0)) for name, stem in stems],
                        out_dir / "midi" / f"{track_id}.mid")
        if opts["audio"] == "mix":
            audio = _audio_file(folder / "mix")
            if audio is None:
                raise LowrankAmtError(f"Slakh song {folder} has no mix.flac or mix.wav")
        else:
            audio = out_dir / "audio" / f"{track_id}.flac"
            length = _sum_stems([folder / "stems" / name for name, _ in stems], audio)
            by_class: dict[str, list] = {}
            for name, stem in stems:
                by_class.setdefault(instrument_class(stem.get("program_num", 0)), []).append(folder / "stems" / name)
            for name, paths in by_class.items():
                _sum_stems(paths, stem_folder(audio) / f"{name}.flac", length)
        return {"track_id": track_id, "split": split, "audio_path": manifest_path_of(audio, out_dir),
                "midi_path": f"midi/{track_id}.mid", "duration": audio_duration(audio),
                "instrument": "+".join(sorted({str(stem.get("inst_class")) for _, stem in stems}))}

    log(f"Slakh {opts['version']}: {len(songs)} songs on {jobs} thread(s)")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = [row for row in pool.map(make, songs) if row is not None]
    if len(rows) < len(songs):
        log(f"{len(songs) - len(rows)} song(s) have no stem of the selected classes and are left out")
    if not rows:
        raise LowrankAmtError(f"no Slakh song has a stem of class {opts['instrument_classes']}")
    write_manifest(rows, manifest_path)


def _sum_stems(stem_paths: list[Path], dest: Path, length: int | None = None) -> int:
    """Write the sum of the given stem recordings (scaled down only if it would clip),
    zero-padded to ``length`` samples if given; return its length."""
    total, rate = None, None
    for path in stem_paths:
        audio_path = _audio_file(path)
        if audio_path is None:
            raise LowrankAmtError(f"Slakh stem audio {path}.flac (or .wav) is missing")
        audio, this_rate = soundfile.read(str(audio_path), dtype="float32", always_2d=True)
        if rate is not None and this_rate != rate:
            raise LowrankAmtError(f"Slakh stem {audio_path} is at {this_rate} Hz, the others at {rate} Hz")
        rate = this_rate
        if total is None:
            total = audio
        else:
            length, channels = max(len(total), len(audio)), max(total.shape[1], audio.shape[1])
            grown = np.zeros((length, channels), dtype=np.float32)
            grown[: len(total), : total.shape[1]] += total
            grown[: len(audio), : audio.shape[1]] += audio
            total = grown
    if length is not None:
        total = np.pad(total, ((0, max(0, length - len(total))), (0, 0)))
    peak = float(np.abs(total).max()) if total.size else 0.0
    if peak > 1.0:
        total = total / peak
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        soundfile.write(str(tmp), total, rate, format="FLAC", subtype="PCM_16")
    return len(total)
