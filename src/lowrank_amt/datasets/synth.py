"""The embedded synthetic piano dataset: composed MIDI rendered by fluidsynth.

Pieces have musical structure (``compose_piece``): a key, a tempo that changes between
sections, and sections of two bars over a chord progression, each in one texture —
block chords, scales, arpeggios, a melody over an accompaniment, repeated notes, wide
or narrow voicings — with dynamics, humanised timing and, in some pieces, the sustain
pedal (CC64). Isolated notes of all 88 keys at several velocities are rendered per
training timbre, like MAPS ISOL, for supervised template learning.

A timbre is a preset of a soundfont: ``SOUNDFONT:PROGRAM`` or ``SOUNDFONT:BANK:PROGRAM``
(General MIDI programs 0-7 are pianos), SOUNDFONT being a path, a file name in Debian's
soundfont folders, or ``auto``. Training, validation and isolated-note tracks cycle
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
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import soundfile

from ..constants import MIDI_MAX, MIDI_MIN
from ..errors import LowrankAmtError
from ..io import atomic_path
from ..param import Param
from . import options
from .manifest import write_manifest

#: Debian's soundfont folders: a timbre's soundfont may be named by its file name alone.
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
#: Soundfonts never used here (held-out evaluation outside the project), by file name.
RESERVED_SOUNDFONT = "musescore"
#: Where Debian's packages put General MIDI soundfonts, best first.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # timgm6mb-soundfont
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = "install Debian's fluid-soundfont-gm (apt-get install fluid-soundfont-gm)"

ISOLATED_HOLD_SECONDS = 1.0
ISOLATED_SPACING_SECONDS = 1.5

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

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: a leading tone for the dominant
#: Chord progressions as scale degrees (0 = I), one chord per bar.
PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0), (0, 4, 5, 3), (5, 3, 0, 4),
                (0, 3, 1, 4), (0, 0, 3, 4), (3, 4, 2, 5))
TEXTURES = ("chords", "scale", "arpeggio", "melody", "repeated", "wide", "narrow")
#: Shortest note kept when the polyphony limit shortens a note (s).
MIN_NOTE_SECONDS = 0.05


def full_spec(spec: dict) -> dict:
    """``spec`` with defaults filled in, checked (each key by its ``Param``, then the
    timbres across keys); errors name the offending key."""
    spec = options(PARAMS, spec)
    low, high = spec["pitch_range"]
    if high - low < 12:
        raise LowrankAmtError(f"datasets.<name>.pitch_range {spec['pitch_range']} must span at least an octave")
    train, test = ({(_font_key(f), b, p) for f, b, p in timbres(spec, split)} for split in ("train", "test"))
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


def parse_timbre(text: str) -> tuple[str, int, int]:
    """``SOUNDFONT:PROGRAM`` or ``SOUNDFONT:BANK:PROGRAM`` -> (soundfont, bank, program)."""
    parts = str(text).rsplit(":", 2)
    if len(parts) == 2:
        parts.insert(1, "0")
    try:
        font, bank, program = parts[0], int(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        font = ""
    if not font or not 0 <= bank <= 127 or not 0 <= program <= 127:
        raise LowrankAmtError(f"datasets.<name>: timbre {text!r} must be SOUNDFONT:PROGRAM or "
                              "SOUNDFONT:BANK:PROGRAM (bank and program 0-127)")
    return font, bank, program


def timbres(spec: dict, split: str) -> list[tuple[str, int, int]]:
    """The (soundfont, bank, program) timbres of ``split`` ('train' or 'test'): the
    ``<split>_timbres`` key, else its programs of ``soundfont`` (``test_soundfont``)."""
    if spec[f"{split}_timbres"] is not None:
        return [parse_timbre(t) for t in spec[f"{split}_timbres"]]
    font = spec["test_soundfont"] or spec["soundfont"] if split == "test" else spec["soundfont"]
    return [(font, 0, program) for program in spec[f"{split}_programs"]]


def _font_key(setting: str) -> str:
    """A soundfont setting as the file it names, where it exists (so that ``auto``, a
    file name and a path to one soundfont compare equal)."""
    try:
        return str(find_soundfont(setting).resolve())
    except LowrankAmtError:
        return setting


def _refuse_reserved(path: Path) -> Path:
    if any(RESERVED_SOUNDFONT in str(p).lower() for p in (path, path.resolve())):
        raise LowrankAmtError(f"soundfont {path} is a MuseScore General soundfont, reserved for held-out "
                              "evaluation outside the project; use another (FluidR3, TimGM6mb, sf_GMbank, ...)")
    return path


def find_soundfont(setting: str = "auto") -> Path:
    """Resolve a soundfont setting (a path, a file name in ``SOUNDFONT_DIRS``, or
    ``auto``) to an existing file, or explain what to do."""
    if setting != "auto":
        path = Path(setting)
        if not path.is_file() and path.name == setting:
            path = next((Path(d) / setting for d in SOUNDFONT_DIRS if (Path(d) / setting).is_file()), path)
        if not path.is_file():
            raise LowrankAmtError(f"soundfont {setting} does not exist; fix the dataset's soundfont or timbres, "
                                  f"or {INSTALL_HINT}")
        return _refuse_reserved(path)
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return _refuse_reserved(Path(candidate))
    raise LowrankAmtError(
        f"no General MIDI soundfont found (looked in {', '.join(SOUNDFONT_CANDIDATES)}); "
        f"{INSTALL_HINT}, or set 'datasets.<name>.soundfont' to an .sf2 file"
    )


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise LowrankAmtError("fluidsynth is not on PATH; install it (apt-get install fluidsynth, or conda install -c conda-forge fluidsynth)")
    return exe


# --- composition -------------------------------------------------------------------

def _fit(pitch: int, low: int, high: int) -> int:
    """Move ``pitch`` by octaves into [low, high]."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


class _Writer:
    """Collects notes of one piece with humanised timing, dynamics and range folding."""

    def __init__(self, rng, low, high):
        self.rng, self.low, self.high = rng, low, high
        self.notes: list[pretty_midi.Note] = []

    def add(self, pitch, start, duration, velocity):
        jitter = float(self.rng.normal(0.0, 0.008))
        start = max(0.0, start + jitter)
        velocity = int(np.clip(round(velocity + self.rng.normal(0, 6)), 1, 127))
        self.notes.append(pretty_midi.Note(velocity, _fit(int(pitch), self.low, self.high),
                                           round(start, 4), round(start + max(duration, MIN_NOTE_SECONDS), 4)))


def _degree_pitch(tonic: int, scale, degree: int) -> int:
    """MIDI pitch of a scale degree counted from ``tonic`` (degree may exceed 7 or be < 0)."""
    octave, step = divmod(degree, 7)
    return tonic + 12 * octave + scale[step]


def _chord(tonic, scale, root_degree, size):
    """Pitches of a chord stacked in thirds on ``root_degree``, ``size`` notes."""
    return [_degree_pitch(tonic, scale, root_degree + 2 * k) for k in range(size)]


def _chord_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """Block chords over a bass, struck 1, 2 or 4 times (``wide``: spread over three
    octaves; ``narrow``: a close cluster within an octave)."""
    rng, bar = w.rng, 4 * beat
    size = int(rng.integers(2, max(3, max_polyphony)))  # leaves room for the bass
    chord = _chord(base, scale, degree, size)
    if texture == "narrow":  # close cluster: chord tones plus a neighbour, within an octave
        chord = sorted({_fit(p, centre - 6, centre + 6) for p in chord + [chord[0] + scale[1]]})
    hits = rng.choice([1, 2, 4])
    for h in range(hits):
        start, length = t0 + h * bar / hits, bar / hits
        bass = base - 24 if texture == "wide" else base - 12
        w.add(bass + scale[degree % 7], start, 0.95 * length, velocity + 5)
        top = 24 if texture == "wide" else 0
        for p in chord[: max_polyphony - 1]:
            w.add(p + top, start, 0.9 * length, velocity)


def _scale_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """A run of eighths or sixteenths, alone or in parallel thirds, sixths or octaves."""
    rng = w.rng
    step = float(rng.choice([0.5, 0.25]))  # eighths or sixteenths
    n = int(round(4 / step))
    direction = int(rng.choice([-1, 1]))
    start_degree = degree + int(rng.integers(-3, 4))
    parallel = int(rng.choice([0, 0, 2, 5, 7]))  # alone, in thirds, sixths or octaves
    d = start_degree
    for k in range(n):
        if k and rng.random() < 0.1:  # turn around now and then
            direction = -direction
        d += direction if k else 0
        p = _degree_pitch(base, scale, d)
        w.add(p, t0 + k * step * beat, 0.9 * step * beat, velocity + 4 * (k % 4 == 0))
        if parallel and max_polyphony > 1:
            w.add(_degree_pitch(base, scale, d - parallel), t0 + k * step * beat, 0.9 * step * beat, velocity - 8)


def _arpeggio_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """The chord broken up and down over two octaves, notes released or held."""
    rng, bar = w.rng, 4 * beat
    step = float(rng.choice([0.5, 0.25, 1 / 3]))
    n = int(round(4 / step))
    tones = _chord(base - 12, scale, degree, 3)
    span = [p + 12 * o for o in range(2) for p in tones] + [tones[0] + 24]
    pattern = span + span[-2:0:-1]
    hold = bool(rng.random() < 0.5)  # held to the end of the bar: polyphony builds up
    for k in range(n):
        start = t0 + k * step * beat
        end = t0 + bar if hold else start + 0.9 * step * beat
        w.add(pattern[k % len(pattern)], start, end - start, velocity)


def _melody_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """Left hand: Alberti bass or half-bar chords; right hand: a stepwise melody on the scale."""
    rng, bar = w.rng, 4 * beat
    low_chord = _chord(base - 12, scale, degree, 3)
    if rng.random() < 0.5:
        for k, idx in enumerate([0, 2, 1, 2] * 2):
            w.add(low_chord[idx], t0 + k * beat / 2, 0.45 * beat, velocity - 15)
    else:
        for h in range(2):
            for p in low_chord[: max(1, max_polyphony - 1)]:
                w.add(p, t0 + h * 2 * beat, 1.9 * beat, velocity - 15)
    t, d = t0, 2 * 7 + degree + 2 * int(rng.integers(0, 3))
    while t < t0 + bar - 1e-6:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0, 0.5])) * beat
        length = min(length, t0 + bar - t)
        w.add(_degree_pitch(base - 12, scale, d), t, 0.95 * length, velocity + 10)
        d += int(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3]))
        t += length


def _repeated_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """One key re-struck (optionally with its lower octave) over a held chord."""
    rng, bar = w.rng, 4 * beat
    step = float(rng.choice([0.5, 0.25, 1 / 3]))
    n = int(round(4 / step))
    pitch = _degree_pitch(base, scale, degree + int(rng.choice([0, 2, 4])))
    octave = max_polyphony > 2 and rng.random() < 0.4
    for k in range(n):
        start = t0 + k * step * beat
        w.add(pitch, start, 0.6 * step * beat, velocity + 6 * (k % 2 == 0))
        if octave:
            w.add(pitch - 12, start, 0.6 * step * beat, velocity - 5)
    for p in _chord(base - 12, scale, degree, 3)[: max(0, max_polyphony - 2)]:
        w.add(p, t0, 0.95 * bar, velocity - 20)


#: texture -> the function writing one bar of it
_BARS = {"chords": _chord_bar, "wide": _chord_bar, "narrow": _chord_bar, "scale": _scale_bar,
         "arpeggio": _arpeggio_bar, "melody": _melody_bar, "repeated": _repeated_bar}


def _bar(w: _Writer, texture, t0, beat, tonic, scale, degree, centre, velocity, max_polyphony):
    """Write one bar (4 beats from ``t0``) of ``texture`` over the chord on ``degree``."""
    base = tonic + 12 * ((centre - tonic) // 12)  # tonic in the octave of the register centre
    if texture in _BARS:
        _BARS[texture](w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony)


def _limit_polyphony(notes: list[pretty_midi.Note], max_polyphony: int, seconds: float) -> list[pretty_midi.Note]:
    """Notes sorted by onset, cut to end by ``seconds``, one sounding note per key (a
    repeated key releases just before it is struck again) and at most ``max_polyphony``
    keys down at once (the oldest sounding note is released early, or the new one
    dropped when that would make a note shorter than ``MIN_NOTE_SECONDS``)."""
    kept: list[pretty_midi.Note] = []
    sounding: list[pretty_midi.Note] = []
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        if note.start > seconds - 0.1:
            continue
        note.end = min(note.end, seconds)
        sounding = [n for n in sounding if n.end > note.start]
        same = [n for n in sounding if n.pitch == note.pitch]
        if any(note.start - n.start < MIN_NOTE_SECONDS for n in same):
            continue
        for n in same:
            n.end = note.start - 0.01
        sounding = [n for n in sounding if n not in same]
        if len(sounding) >= max_polyphony:
            oldest = min(sounding, key=lambda n: n.start)
            if note.start - oldest.start < MIN_NOTE_SECONDS:
                continue
            oldest.end = note.start
            sounding.remove(oldest)
        kept.append(note)
        sounding.append(note)
    return [n for n in kept if n.end - n.start > 0.02]


def compose_piece(rng: np.random.Generator, seconds: float, max_polyphony: int = 8,
                  pitch_range: tuple[int, int] = (MIDI_MIN, MIDI_MAX), program: int = 0,
                  pedal: bool = False) -> pretty_midi.PrettyMIDI:
    """A structured piano piece of ``seconds`` (its last note ends by then).

    Key and mode are drawn once; the piece is a run of sections of two bars, each with its
    own texture (one of ``TEXTURES``), register, tempo (base tempo 60-150 BPM, varied by
    up to +-20 % per section), dynamic level and crescendo, over a chord progression.
    With ``pedal``, CC64 is pressed after each chord change and released before the next.
    """
    low, high = pitch_range
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    base_bpm = float(rng.uniform(60, 150))
    writer = _Writer(rng, low, high)
    pedal_changes: list[pretty_midi.ControlChange] = []
    t = float(rng.uniform(0.05, 0.3))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bar_index = 0
    while t < seconds - 0.2:
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        beat = 60.0 / (base_bpm * float(rng.uniform(0.8, 1.2)))
        if texture == "wide":
            centre = int(rng.integers(low + 24, max(low + 25, high - 23)))
        else:
            centre = int(rng.integers(low + 12, max(low + 13, high - 11)))
        velocity = float(rng.uniform(35, 105))
        swell = float(rng.uniform(-15, 15))
        for b in range(2):
            degree = progression[bar_index % len(progression)]
            _bar(writer, texture, t, beat, tonic, scale, degree, centre, velocity + swell * b / 2, max_polyphony)
            if pedal and texture in ("chords", "arpeggio", "melody", "wide"):
                pedal_changes.append(pretty_midi.ControlChange(64, 100, round(t + 0.05, 4)))
                pedal_changes.append(pretty_midi.ControlChange(64, 0, round(min(t + 4 * beat - 0.03, seconds), 4)))
            t += 4 * beat
            bar_index += 1
            if bar_index % len(progression) == 0 and rng.random() < 0.5:
                progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=program, name="piano")
    piano.notes = _limit_polyphony(writer.notes, max_polyphony, seconds)
    piano.control_changes = [c for c in pedal_changes if c.time < seconds]
    midi.instruments.append(piano)
    return midi


def random_piece(rng: np.random.Generator, seconds: float, max_polyphony: int,
                 pitch_range: tuple[int, int], program: int = 0) -> pretty_midi.PrettyMIDI:
    """A random polyphonic piece (no structure): chords of 1..max_polyphony notes at
    random times, never exceeding ``max_polyphony`` sounding notes. Kept as a baseline."""
    low, high = pitch_range
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=program, name="piano")
    sounding: list[pretty_midi.Note] = []
    t = float(rng.uniform(0.1, 0.4))
    while t < seconds - 0.3:
        sounding = [n for n in sounding if n.end > t]
        room = max_polyphony - len(sounding)
        if room > 0:
            busy = {n.pitch for n in sounding}
            free = [p for p in range(low, high + 1) if p not in busy]
            size = int(rng.integers(1, room + 1))
            for pitch in rng.choice(free, size=min(size, len(free)), replace=False):
                duration = float(rng.uniform(0.15, 1.5))
                note = pretty_midi.Note(velocity=int(rng.integers(40, 115)), pitch=int(pitch),
                                        start=round(t, 3), end=round(min(t + duration, seconds), 3))
                piano.notes.append(note)
                sounding.append(note)
        t += float(rng.choice([0.125, 0.25, 0.375, 0.5, 0.75]))
    piano.notes.sort(key=lambda n: (n.start, n.pitch))
    midi.instruments.append(piano)
    return midi


def isolated_notes(velocity: int, program: int = 0) -> pretty_midi.PrettyMIDI:
    """Every piano key in turn, held ``ISOLATED_HOLD_SECONDS``, one key at a time."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=program, name="piano")
    for i, pitch in enumerate(range(MIDI_MIN, MIDI_MAX + 1)):
        start = 0.25 + i * ISOLATED_SPACING_SECONDS
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start,
                                            end=start + ISOLATED_HOLD_SECONDS))
    midi.instruments.append(piano)
    return midi


# --- rendering ---------------------------------------------------------------------

def select_bank(midi_path: Path, bank: int) -> None:
    """Put a bank select (CC0) before each program change of a MIDI file: pretty_midi
    writes a tick's program change first, and a later CC0 would not change its preset."""
    midi = mido.MidiFile(str(midi_path))
    for track in midi.tracks:
        for i, message in enumerate(track):
            if message.type == "program_change":
                track.insert(i, mido.Message("control_change", channel=message.channel, control=0, value=bank,
                                             time=message.time))
                message.time = 0
                break
    midi.save(str(midi_path))


def render(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int,
           reverb: bool = False, noise_snr_db: float | None = None, noise_seed=0) -> float:
    """Render a MIDI file with fluidsynth to a mono 16-bit WAV; return its duration (s).

    fluidsynth's stereo output is averaged to mono; with ``reverb`` its room reverb is on;
    with ``noise_snr_db``, white noise (seeded by ``noise_seed``) is added at that
    signal-to-noise ratio. Samples beyond full scale are clipped (none at the default gain).
    """
    with tempfile.TemporaryDirectory(prefix="render-", dir=Path(wav_path).parent) as scratch:
        raw = Path(scratch) / "raw.wav"
        cmd = [find_fluidsynth(), "-ni", "-q", "-R", "1" if reverb else "0", "-C", "0", "-g", "0.5",
               "-r", str(sample_rate), "-T", "wav", "-O", "s16", "-F", str(raw)]
        if reverb:
            cmd += ["-o", "synth.reverb.room-size=0.6", "-o", "synth.reverb.level=0.5"]
        done = subprocess.run(cmd + [str(soundfont), str(midi_path)], capture_output=True, text=True)
        if done.returncode != 0 or not raw.exists() or raw.stat().st_size <= 44:
            raise LowrankAmtError(f"fluidsynth failed to render {midi_path}: {done.stderr.strip() or 'empty output'}")
        audio, rate = soundfile.read(str(raw), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if noise_snr_db is not None:
        power = float(np.mean(audio ** 2)) or 1e-12
        noise = np.random.default_rng(noise_seed).standard_normal(len(audio))
        audio = audio + noise * np.sqrt(power / 10 ** (noise_snr_db / 10))
    with atomic_path(wav_path) as tmp:
        soundfile.write(str(tmp), np.clip(audio, -1.0, 32767 / 32768), rate, subtype="PCM_16", format="WAV")
    return len(audio) / rate


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
