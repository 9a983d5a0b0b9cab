"""The embedded synthetic piano dataset: composed MIDI rendered by fluidsynth.

Pieces have musical structure (``compose_piece``): a key, a tempo that changes between
sections, and sections of two bars over a chord progression, each in one texture —
block chords, scales, arpeggios, a melody over an accompaniment, repeated notes, wide
or narrow voicings — with dynamics, humanised timing and, in some pieces, the sustain
pedal (CC64). Isolated notes of all 88 keys at several velocities are rendered per
training timbre, like MAPS ISOL, for supervised template learning.

Composition is ``composition.py``, rendering and the soundfonts ``rendering.py``. A
timbre is a preset of a soundfont (General MIDI programs 0-7 are pianos). Training, validation and isolated-note tracks cycle
through ``train_timbres``, test pieces through ``test_timbres``; by default these are
``train_programs`` and ``test_programs`` of ``soundfont`` (and ``test_soundfont``). No
test timbre may be a training one, so models are tested on a piano they never heard (as
MAPS is used). The MuseScore General soundfonts are refused by name: they are kept for
evaluation outside the project.

Sizes nest: piece ``i`` of a split depends only on ``(seed, split, i)``, and the training
split holds the first ``ceil(train_hours * 3600 / piece_seconds)`` pieces, so a larger
corpus only adds pieces. The same spec gives the same MIDI and WAV bytes.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..constants import MIDI_MAX, MIDI_MIN
from ..errors import LowrankAmtError
from ..param import Param
from ..runtime.io import atomic_path
from . import options
from .composition import compose_piece, isolated_notes
from .manifest import write_manifest
from .rendering import find_soundfont, font_key, parse_timbre, render, select_bank

#: JSON Schema of a list of General MIDI programs and of a list of timbres.
PROGRAMS = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 127}, "minItems": 1}
TIMBRES = {"type": ["array", "null"], "items": {"type": "string", "pattern": "^.+:[0-9]+(:[0-9]+)?$"}, "minItems": 1}
DESCRIPTION = "The embedded synthetic piano corpus."
PARAMS = (
    Param("seed", 0, type="integer", minimum=0,
          meaning="Seed of the MIDI generator; the same seed gives the same MIDI and the same audio bytes."),
    Param("train_hours", None, type=["number", "null"], exclusiveMinimum=0, maximum=1000,
          meaning="Hours of training pieces (MIDI length); overrides n_train. Larger sizes only add pieces, so "
                  "sizes nest."),
    Param("n_train", 4, type="integer", minimum=0, meaning="Number of training pieces when train_hours is null."),
    Param("n_validation", 2, type="integer", minimum=0,
          meaning="Number of validation pieces (decoding is tuned on them; 0 only for a dataset with `role: "
                  "test`)."),
    Param("n_test", 4, type="integer", minimum=1, meaning="Number of test pieces."),
    Param("piece_seconds", 10, type="number", exclusiveMinimum=0, maximum=3600,
          meaning="Length of each generated piece in seconds."),
    Param("max_polyphony", 8, type="integer", minimum=1, maximum=12,
          meaning="Largest number of notes sounding at once in a generated piece."),
    Param("pitch_range", [MIDI_MIN, MIDI_MAX], type="array",
          items={"type": "integer", "minimum": MIDI_MIN, "maximum": MIDI_MAX}, minItems=2, maxItems=2,
          meaning="Lowest and highest MIDI pitch of generated notes (inclusive, at least an octave apart)."),
    Param("train_programs", [0, 3], **PROGRAMS,
          meaning="General MIDI programs (0-7 are pianos) of training, validation and isolated-note tracks."),
    Param("test_programs", [2], **PROGRAMS,
          meaning="General MIDI programs of the test pieces; must differ from train_programs when both use the "
                  "same soundfont (test on an unseen piano)."),
    Param("soundfont", "auto", type="string",
          meaning="Path to an .sf2/.sf3 soundfont, or `auto` for the first of Debian's General MIDI soundfonts "
                  "found."),
    Param("test_soundfont", None, type=["string", "null"],
          meaning="Soundfont of the test split (null = `soundfont`)."),
    Param("train_timbres", None, **TIMBRES,
          meaning="Timbres of training, validation and isolated-note tracks, each `SOUNDFONT:PROGRAM` or "
                  "`SOUNDFONT:BANK:PROGRAM` (SOUNDFONT: a path, a file name in /usr/share/sounds/sf2, sf3 or "
                  "/usr/share/soundfonts, or `auto`); tracks cycle through them. null = `train_programs` of "
                  "`soundfont`. MuseScore General soundfonts are refused."),
    Param("test_timbres", None, **TIMBRES,
          meaning="Timbres of the test pieces, as `train_timbres`; none may be a training timbre. null = "
                  "`test_programs` of `test_soundfont` (or `soundfont`)."),
    Param("pedal_probability", 0.4, type="number", minimum=0, maximum=1,
          meaning="Share of pieces played with sustain pedal (CC64)."),
    Param("isolated_velocities", [80], type="array", items={"type": "integer", "minimum": 1, "maximum": 127},
          meaning="Velocities at which every piano key is rendered in isolation, per training program, for "
                  "template learning ([]: none, e.g. for a dataset with `role: test`)."),
    Param("reverb", False, type="boolean", meaning="Render with fluidsynth's room reverb."),
    Param("noise_snr_db", None, type=["number", "null"], minimum=-20, maximum=100,
          meaning="Add white noise at this signal-to-noise ratio in dB (null = none)."),
)


def full_spec(spec: dict) -> dict:
    """``spec`` with defaults filled in, checked (each key by its ``Param``, then the
    timbres across keys); errors name the offending key."""
    spec = options(PARAMS, spec)
    low, high = spec["pitch_range"]
    if high - low < 12:
        raise LowrankAmtError(f"datasets.<name>.pitch_range {spec['pitch_range']} must span at least an octave")
    train, test = ({(font_key(f), b, p) for f, b, p in timbres(spec, split)} for split in ("train", "test"))
    shared = train & test
    if shared:
        raise LowrankAmtError(
            f"datasets.<name>: test timbres share {sorted(shared)[0]} with the training timbres; "
            "the test piano must be one no training track uses (see test_programs / test_timbres)")
    return spec


def n_train_pieces(spec: dict) -> int:
    """Training pieces of a spec: enough to reach ``train_hours`` if set, else ``n_train``."""
    if spec.get("train_hours") is None:
        return int(spec["n_train"])
    return math.ceil(spec["train_hours"] * 3600 / spec["piece_seconds"] - 1e-9)


def timbres(spec: dict, split: str) -> list[tuple[str, int, int]]:
    """The (soundfont, bank, program) timbres of ``split`` ('train' or 'test'): the
    ``<split>_timbres`` key, else its programs of ``soundfont`` (``test_soundfont``)."""
    if spec[f"{split}_timbres"] is not None:
        return [parse_timbre(t) for t in spec[f"{split}_timbres"]]
    font = spec["test_soundfont"] or spec["soundfont"] if split == "test" else spec["soundfont"]
    return [(font, 0, program) for program in spec[f"{split}_programs"]]


def plan_tracks(spec: dict) -> list[dict]:
    """Every track of the dataset: id, split, program, soundfont setting and a function
    making its MIDI. Cheap: no MIDI is composed until ``make`` is called."""
    spec = full_spec(spec)
    tracks = []
    train, test = timbres(spec, "train"), timbres(spec, "test")
    splits = (("train", n_train_pieces(spec), train), ("validation", spec["n_validation"], train),
              ("test", spec["n_test"], test))
    for split_index, (split, count, split_timbres) in enumerate(splits):
        for i in range(count):
            font, bank, program = split_timbres[i % len(split_timbres)]
            seed = [spec["seed"], split_index, i]

            def make(seed=seed, program=program):
                rng = np.random.default_rng(seed)
                pedal = bool(rng.random() < spec["pedal_probability"])
                return compose_piece(rng, spec["piece_seconds"], spec["max_polyphony"],
                                     tuple(spec["pitch_range"]), program, pedal)
            tracks.append({"track_id": f"{split}_{i:05d}", "split": split, "program": program, "bank": bank,
                           "soundfont": font, "seed": seed, "make": make})
    for font, bank, program in train:
        # the default timbres keep their short names (and so their cached files)
        tag = f"p{program:03d}" if (font, bank) == (spec["soundfont"], 0) else \
            f"{Path(font).stem}_b{bank:03d}_p{program:03d}"
        for velocity in spec["isolated_velocities"]:
            tracks.append({"track_id": f"isolated_{tag}_v{velocity:03d}", "split": "isolated", "program": program,
                           "bank": bank, "soundfont": font, "seed": [spec["seed"], 3, program, velocity],
                           "make": lambda v=velocity, p=program: isolated_notes(v, p)})
    return tracks


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int,
            jobs: int = 1, log=print) -> None:
    """Compose and render the synthetic dataset described by ``spec`` (one ``datasets``
    entry of the config) beside ``manifest_path`` on ``jobs`` threads (each runs one
    fluidsynth process at a time), and write the manifest last."""
    full = full_spec(spec)
    out_dir = Path(manifest_path).parent
    tracks = plan_tracks(full)
    fonts = {s: find_soundfont(s) for s in {track["soundfont"] for track in tracks}}
    (out_dir / "midi").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)

    def make(track):
        track_id, soundfont = track["track_id"], fonts[track["soundfont"]]
        midi_path = out_dir / "midi" / f"{track_id}.mid"
        wav_path = out_dir / "audio" / f"{track_id}.wav"
        with atomic_path(midi_path) as tmp:
            track["make"]().write(str(tmp))
            if track["bank"]:
                select_bank(tmp, track["bank"])
        noise_seed = [*track["seed"], 7]
        duration = render(midi_path, wav_path, soundfont, sample_rate, full["reverb"], full["noise_snr_db"], noise_seed)
        return {"track_id": track_id, "split": track["split"], "audio_path": f"audio/{track_id}.wav",
                "midi_path": f"midi/{track_id}.mid", "duration": round(duration, 4),
                "instrument": f"gm{track['program']}:{soundfont.stem}" + (f":b{track['bank']}" if track["bank"] else "")}

    log(f"rendering {len(tracks)} tracks ({n_train_pieces(full)} training pieces of "
        f"{full['piece_seconds']} s) with {', '.join(map(str, fonts.values()))} on {jobs} thread(s)")
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for n, row in enumerate(pool.map(make, tracks), 1):
            rows.append(row)
            if n == len(tracks) or n % max(1, len(tracks) // 20) == 0:
                log(f"[{n}/{len(tracks)}] {row['track_id']} ({row['duration']:.1f} s)")
    write_manifest(rows, manifest_path)
