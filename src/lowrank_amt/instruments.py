"""Instrument classes: the sixteen General MIDI program families, named as Slakh's
``inst_class`` names them (Strings and Ensemble merged into ``strings``, as Slakh's
"Strings" and "Strings (continued)" are one class in multi-instrument evaluations).

A note's class is its MIDI instrument's program family; drum tracks have none and are
never transcribed. An instrument-aware transcription is a MIDI file with one track per
class, each named by its class (``write_class_tracks``); an instrument-agnostic one has a
single track named ``transcription`` (``notes.write_midi_notes``), for which
instrument-aware metrics are not defined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi

from .constants import N_KEYS
from .errors import LowrankAmtError
from .evaluation.notes import pooled_notes, read_midi, track_notes
from .runtime.io import atomic_path

#: class name -> its General MIDI programs (eight per family; strings: sixteen).
CLASS_PROGRAMS = {
    "piano": range(0, 8), "chromatic_percussion": range(8, 16), "organ": range(16, 24),
    "guitar": range(24, 32), "bass": range(32, 40), "strings": range(40, 56), "brass": range(56, 64),
    "reed": range(64, 72), "pipe": range(72, 80), "synth_lead": range(80, 88), "synth_pad": range(88, 96),
    "synth_effects": range(96, 104), "ethnic": range(104, 112), "percussive": range(112, 120),
    "sound_effects": range(120, 128),
}
CLASSES = tuple(CLASS_PROGRAMS)


def instrument_class(program: int) -> str:
    """The class of a General MIDI program (0-127)."""
    return next(name for name, programs in CLASS_PROGRAMS.items() if int(program) in programs)


def class_program(name: str) -> int:
    """The program a class's transcribed track is written with: the family's first."""
    return CLASS_PROGRAMS[name][0]


def _class_of(inst: pretty_midi.Instrument) -> str:
    """An instrument's class: its name where that is a class (a transcription's track,
    ``write_class_tracks``), else its program's (a reference's)."""
    return inst.name if inst.name in CLASS_PROGRAMS else instrument_class(inst.program)


def read_class_notes(path: str | Path, pedal_extension: bool = False) -> dict[str, tuple]:
    """class -> (intervals, pitches, velocities) of a MIDI file's pitched notes, sorted by
    onset; instruments of one class are pooled, each lengthened by its own pedal first
    (``notes.track_notes``). A transcription's tracks are read by their names
    (``write_class_tracks``), a reference's by their programs."""
    midi = read_midi(path)
    grouped: dict[str, list] = {}
    for inst in midi.instruments:
        if not inst.is_drum and inst.notes:
            grouped.setdefault(_class_of(inst), []).append(track_notes(midi, inst, pedal_extension))
    return {name: pooled_notes(tracks) for name, tracks in grouped.items()}


def is_instrument_aware(path: str | Path) -> bool:
    """Whether a transcription names its instruments (every track is named by a class)."""
    midi = read_midi(path)
    return bool(midi.instruments) and all(inst.name in CLASS_PROGRAMS for inst in midi.instruments)


def write_class_tracks(path: str | Path, tracks: dict[str, tuple]) -> None:
    """One MIDI track per class (named by it, with its family's first program) from
    class -> (intervals, pitches, velocities)."""
    midi = pretty_midi.PrettyMIDI()
    for name, (intervals, pitches, velocities) in tracks.items():
        inst = pretty_midi.Instrument(program=class_program(name), name=name)
        for (start, end), pitch, velocity in zip(intervals, pitches, velocities):
            inst.notes.append(pretty_midi.Note(int(velocity), int(pitch), float(start), float(end)))
        midi.instruments.append(inst)
    with atomic_path(path) as tmp:
        midi.write(str(tmp))


def track_class(midi_path: str | Path) -> str:
    """The class of a one-instrument track (an isolated-note recording): its first pitched
    instrument's; a file with none is an error naming it."""
    pitched = [inst for inst in read_midi(midi_path).instruments if not inst.is_drum]
    if not pitched:
        raise LowrankAmtError(f"MIDI file {midi_path} has no pitched instrument (drums only)")
    return _class_of(pitched[0])


def present_classes(midi_paths) -> list[str]:
    """The classes of the pitched notes of some MIDI files, in ``CLASSES`` order (a file
    that cannot be read is passed over: reading its notes reports it)."""
    found = set()
    for path in midi_paths:
        try:
            found |= {name for name, notes in read_class_notes(path).items() if len(notes[1])}
        except LowrankAmtError:
            continue
    return [name for name in CLASSES if name in found]


def class_roll(midi_path, classes: list[str], n_frames: int, frame_rate: float,
               pedal_extension: bool = False) -> np.ndarray:
    """(len(classes) * 88) x n_frames uint8, class-major: each class's key roll as
    ``targets.frame_targets`` lays it out (zero for a class the file lacks)."""
    from .signal.targets import frame_targets
    notes = read_class_notes(midi_path, pedal_extension)
    rolls = [frame_targets(*notes[name][:2], n_frames, frame_rate)["roll"] if name in notes
             else np.zeros((N_KEYS, n_frames), dtype=np.uint8) for name in classes]
    return np.concatenate(rolls) if rolls else np.zeros((0, n_frames), dtype=np.uint8)


def index_classes(index_path) -> list[str]:
    """The instrument classes of a feature cache (its index's ``classes``: those of the
    dataset's notes, in ``CLASSES`` order, the class-major order of its ``class_roll``)."""
    from .signal.feature_cache import read_index
    index = read_index(index_path)
    if "classes" not in index.columns:
        raise LowrankAmtError(f"feature index {index_path} has no instrument classes; extract the features again")
    value = index["classes"].iloc[0]
    return [] if not isinstance(value, str) or not value else value.split(";")
