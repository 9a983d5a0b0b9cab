"""Synthetic multi-instrument and guitar corpora, made the way Slakh was made: pieces
written as one MIDI track per part, each part rendered alone by fluidsynth with a timbre
drawn from its instrument class's pool, the mixture the sum of the stems.

``arrangement: band`` writes four parts over one chord progression (``compose_band``):
a bass line (class ``bass``), a chordal comp (``piano``), a monophonic lead (``reed``)
and a sustained pad (``strings``); the lead and the pad rest in some sections, so parts
come and go. ``drums: true`` adds a drum kit stem (never transcribed: its MIDI track is
a drum track). ``arrangement: guitar`` writes solo guitar pieces (``compose_guitar``):
strummed chords on playable six-string voicings (E- and A-shape barre chords), finger-
picked arpeggios over them and single-line melodies, at most one note per string.

Timbres: ``train_timbres`` and ``test_timbres`` map each class to its pool (entries as
the piano corpus's, ``SOUNDFONT:[BANK:]PROGRAM``); a timbre's program must belong to its
class (``instruments.CLASS_PROGRAMS``), no test timbre may be a training one (test
instruments are unheard), and the MuseScore General soundfonts are refused. Each piece
draws one timbre per part from its split's pools.

Files beside the manifest: ``midi/<id>.mid`` (every part, one track per part with its
program), ``audio/<id>.wav`` (the mixture) and ``audio/<id>.stems/<class>.wav`` with
``<class>.mid`` (``manifest.stem_paths``), all at one sample rate and one length, the mixture
being their sum. Isolated notes of every key in each class's range are rendered per
training timbre and velocity (split ``isolated``), for templates per class and key.
Sizes nest and the same spec gives the same bytes, as for the piano corpus.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile

from ..errors import LowrankAmtError
from ..instruments import CLASS_PROGRAMS, instrument_class
from ..param import Param
from ..runtime.io import atomic_path
from . import options
from .composition import (
    ISOLATED_HOLD_SECONDS,
    ISOLATED_SPACING_SECONDS,
    MAJOR,
    MINOR,
    PROGRESSIONS,
    NoteWriter,
    chord_pitches,
    degree_pitch,
    limit_polyphony,
)
from .manifest import stem_folder, write_manifest
from .rendering import find_soundfont, font_key, parse_timbre, render, select_bank
from .synth import n_train_pieces

#: arrangement -> its parts' classes, each with its pitch range (MIDI, inclusive) and polyphony.
PARTS = {
    "band": {"bass": (28, 60, 1), "piano": (48, 84, 4), "reed": (55, 84, 1), "strings": (43, 79, 3)},
    "guitar": {"guitar": (40, 84, 6)},
}
#: Pools from Debian's free soundfonts (fluid-soundfont-gm, timgm6mb-soundfont,
#: csound-soundfont): training timbres, and test timbres no training track uses.
DEFAULT_TIMBRES = {
    "train": {"bass": ["FluidR3_GM.sf2:33", "FluidR3_GM.sf2:34", "FluidR3_GM.sf2:38", "sf_GMbank.sf2:33"],
              "piano": ["FluidR3_GM.sf2:0", "FluidR3_GM.sf2:4", "sf_GMbank.sf2:0"],
              "reed": ["FluidR3_GM.sf2:65", "FluidR3_GM.sf2:68", "sf_GMbank.sf2:71"],
              "strings": ["FluidR3_GM.sf2:48", "FluidR3_GM.sf2:49", "sf_GMbank.sf2:48"],
              "guitar": ["FluidR3_GM.sf2:24", "FluidR3_GM.sf2:25", "FluidR3_GM.sf2:27", "sf_GMbank.sf2:24",
                         "sf_GMbank.sf2:25"]},
    "test": {"bass": ["FluidR3_GM.sf2:32", "TimGM6mb.sf2:33", "sf_GMbank.sf2:34"],
             "piano": ["FluidR3_GM.sf2:2", "TimGM6mb.sf2:0"],
             "reed": ["FluidR3_GM.sf2:66", "TimGM6mb.sf2:71"],
             "strings": ["FluidR3_GM.sf2:50", "TimGM6mb.sf2:48"],
             "guitar": ["FluidR3_GM.sf2:26", "TimGM6mb.sf2:25", "sf_GMbank.sf2:26"]},
}
DRUM_KIT = "FluidR3_GM.sf2:0"  # on MIDI channel 10, which fluidsynth plays with its drum kits
POOLS = {"type": ["object", "null"], "additionalProperties": {"type": "array", "items": {"type": "string"},
                                                              "minItems": 1}}

DESCRIPTION = "Synthetic multi-instrument (band) or solo guitar pieces with their stems."
PARAMS = (
    Param("arrangement", "band", type="string", enum=list(PARTS),
          meaning="`band`: bass, piano comp, reed lead and string pad; `guitar`: solo guitar (strums, arpeggios, "
                  "melodies)."),
    Param("seed", 0, type="integer", minimum=0, meaning="Seed of the generator; the same seed gives the same bytes."),
    Param("train_hours", None, type=["number", "null"], exclusiveMinimum=0, maximum=1000,
          meaning="Hours of training pieces; overrides n_train. Larger sizes only add pieces."),
    Param("n_train", 4, type="integer", minimum=0, meaning="Number of training pieces when train_hours is null."),
    Param("n_validation", 2, type="integer", minimum=0, meaning="Number of validation pieces."),
    Param("n_test", 4, type="integer", minimum=1, meaning="Number of test pieces."),
    Param("piece_seconds", 20, type="number", exclusiveMinimum=0, maximum=3600,
          meaning="Length of each piece in seconds."),
    Param("train_timbres", None, **POOLS,
          meaning="Class -> timbres (`SOUNDFONT:[BANK:]PROGRAM`, the program in the class's General MIDI family) "
                  "of training, validation and isolated-note tracks; null = the arrangement's default pools "
                  "(`datasets/ensemble.py`). Each part draws one per piece."),
    Param("test_timbres", None, **POOLS,
          meaning="Class -> timbres of the test pieces, as train_timbres; none may be a training timbre."),
    Param("drums", False, type="boolean",
          meaning="band: add a drum stem (FluidR3 GM's standard kit), mixed in and never transcribed."),
    Param("isolated_velocities", [80], type="array", items={"type": "integer", "minimum": 1, "maximum": 127},
          meaning="Velocities at which every key of each class's range is rendered alone, per training timbre."),
)


def full_spec(spec: dict) -> dict:
    """``spec`` with defaults and the arrangement's pools filled in, checked: each pool's
    class is a part of the arrangement, each timbre's program is in its class, and no
    test timbre is a training one; errors name the key."""
    spec = options(PARAMS, spec)
    parts = PARTS[spec["arrangement"]]
    for split in ("train", "test"):
        key = f"{split}_timbres"
        pools = spec[key] if spec[key] is not None else {c: DEFAULT_TIMBRES[split][c] for c in parts}
        for name, pool in pools.items():
            if name not in parts:
                raise LowrankAmtError(f"datasets.<name>.{key}: class {name!r} is not a part of arrangement "
                                      f"{spec['arrangement']!r} (parts: {', '.join(parts)})")
            for timbre in pool:
                program = parse_timbre(timbre)[2]
                if program not in CLASS_PROGRAMS[name]:
                    raise LowrankAmtError(f"datasets.<name>.{key}.{name}: timbre {timbre!r} has program {program} "
                                          f"({instrument_class(program)}), outside class {name!r}'s programs "
                                          f"{CLASS_PROGRAMS[name].start}-{CLASS_PROGRAMS[name].stop - 1}")
        missing = [c for c in parts if c not in pools]
        if missing:
            raise LowrankAmtError(f"datasets.<name>.{key} lacks a pool for part {missing[0]!r}")
        spec[key] = pools
    for name in parts:
        train = {_timbre_key(t) for t in spec["train_timbres"][name]}
        shared = sorted(train & {_timbre_key(t) for t in spec["test_timbres"][name]})
        if shared:
            raise LowrankAmtError(f"datasets.<name>.test_timbres.{name} shares {shared[0]} with the training "
                                  "timbres: test instruments must be unheard")
    return spec


def _timbre_key(timbre: str) -> tuple:
    font, bank, program = parse_timbre(timbre)
    return font_key(font), bank, program


# --- composition -------------------------------------------------------------------

def _part(rng, name, arrangement) -> NoteWriter:
    low, high, _ = PARTS[arrangement][name]
    return NoteWriter(rng, low, high)


def _bass_bar(w, t0, beat, root, scale, degree, velocity):
    rng = w.rng
    pattern = int(rng.integers(4))
    fifth = degree_pitch(root, scale, degree + 4)
    tonic = degree_pitch(root, scale, degree)
    if pattern == 0:  # one held root
        w.add(tonic, t0, 3.8 * beat, velocity)
    elif pattern == 1:  # root, fifth
        w.add(tonic, t0, 1.9 * beat, velocity)
        w.add(fifth, t0 + 2 * beat, 1.9 * beat, velocity - 5)
    elif pattern == 2:  # quarters: root root fifth octave
        for k, p in enumerate((tonic, tonic, fifth, tonic + 12)):
            w.add(p, t0 + k * beat, 0.85 * beat, velocity - 5 * (k % 2))
    else:  # walking eighths on the scale
        for k in range(8):
            w.add(degree_pitch(root, scale, degree + (k if k < 5 else 8 - k)), t0 + k * beat / 2, 0.45 * beat,
                  velocity - 4 * (k % 2))


def _comp_bar(w, t0, beat, root, scale, degree, velocity, size):
    rng = w.rng
    chord = chord_pitches(root, scale, degree, size)
    hits = ((0, 4), (0, 2, 2, 2), (0, 1, 1, 1, 2, 1, 3, 1), (0, 1.5, 1.5, 1, 2.5, 1.5))[int(rng.integers(4))]
    for start, length in zip(hits[::2], hits[1::2]):
        for p in chord:
            w.add(p, t0 + start * beat, 0.9 * length * beat, velocity)


def _lead_bar(w, t0, beat, root, scale, degree, velocity, state):
    rng = w.rng
    t = t0
    while t < t0 + 4 * beat - 1e-6:
        length = min(float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0])) * beat, t0 + 4 * beat - t)
        if rng.random() > 0.15:  # a rest now and then
            w.add(degree_pitch(root, scale, state["degree"]), t, 0.92 * length, velocity)
        state["degree"] += int(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3]))
        state["degree"] = int(np.clip(state["degree"], degree + 3, degree + 16))
        t += length


def compose_band(rng, seconds: float, programs: dict[str, int], drums: bool = False) -> pretty_midi.PrettyMIDI:
    """A band piece: a key, a tempo and a progression; sections of two bars, in each of
    which the lead and the pad play or rest. One instrument per part, named by its class."""
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    beat = 60.0 / float(rng.uniform(70, 140))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    parts = {name: _part(rng, name, "band") for name in PARTS["band"]}
    lead_state = {"degree": 7}
    hits = []
    t, bar = float(rng.uniform(0.05, 0.3)), 0
    while t < seconds - 0.3:
        playing = {"lead": rng.random() < 0.75, "pad": rng.random() < 0.7}
        velocity = float(rng.uniform(55, 100))
        size = int(rng.integers(3, 5))
        for _ in range(2):
            degree = progression[bar % len(progression)]
            _bass_bar(parts["bass"], t, beat, tonic + 36, scale, degree, velocity + 5)
            _comp_bar(parts["piano"], t, beat, tonic + 60, scale, degree, velocity - 5, size)
            if playing["lead"]:
                _lead_bar(parts["reed"], t, beat, tonic + 60, scale, degree, velocity + 5, lead_state)
            if playing["pad"]:
                for p in chord_pitches(tonic + 55, scale, degree, 3):
                    parts["strings"].add(p, t, 3.95 * beat, velocity - 20)
            hits += [(t + k * beat / 2, (36, 42, 38, 42)[k % 4]) for k in range(8)]
            t, bar = t + 4 * beat, bar + 1
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for name, writer in parts.items():
        inst = pretty_midi.Instrument(program=programs[name], name=name)
        inst.notes = limit_polyphony(writer.notes, PARTS["band"][name][2], seconds)
        midi.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        kit.notes = [pretty_midi.Note(90, p, round(s, 4), round(s + 0.1, 4)) for s, p in hits if s < seconds - 0.1]
        midi.instruments.append(kit)
    return midi


#: open strings of a guitar in standard tuning (E2 A2 D3 G3 B3 E4)
OPEN_STRINGS = (40, 45, 50, 55, 59, 64)


def guitar_voicing(root_pc: int, minor: bool) -> list[int]:
    """A playable barre voicing of a triad, low string first: the E shape (root on the
    sixth string) or the A shape (root on the fifth, five strings), whichever sits lower
    on the neck (fret 0 is the open chord)."""
    e_fret, a_fret = (root_pc - 4) % 12, (root_pc - 9) % 12
    if e_fret <= a_fret:
        return [s + e_fret + d for s, d in zip(OPEN_STRINGS, (0, 2, 2, 0 if minor else 1, 0, 0))]
    return [s + a_fret + d for s, d in zip(OPEN_STRINGS[1:], (0, 2, 2, 1 if minor else 2, 0))]


def compose_guitar(rng, seconds: float, program: int) -> pretty_midi.PrettyMIDI:
    """A solo guitar piece: sections of two bars strummed, fingerpicked or played as a melody."""
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    beat = 60.0 / float(rng.uniform(70, 130))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    w = _part(rng, "guitar", "guitar")
    t, bar = float(rng.uniform(0.05, 0.3)), 0
    while t < seconds - 0.3:
        texture = ("strum", "arpeggio", "melody")[int(rng.integers(3))]
        velocity = float(rng.uniform(55, 100))
        strokes = ("D.DU.UDU", "D.D.D.D.", "D..UD.DU", "D...D...")[int(rng.integers(4))]
        picking = ((0, 2, 3, 4, 3, 2, 3, 4), (0, 3, 4, 5, 4, 3, 2, 3), (0, 4, 2, 5, 1, 4, 2, 5))[int(rng.integers(3))]
        state = {"degree": 7}
        for _ in range(2):
            degree = progression[bar % len(progression)]
            root_pc = (tonic + scale[degree % 7]) % 12
            minor = (scale[(degree + 2) % 7] - scale[degree % 7]) % 12 == 3
            voicing = guitar_voicing(root_pc, minor)
            if texture == "strum":
                for k, stroke in enumerate(strokes):
                    if stroke == ".":
                        continue
                    strings = voicing if stroke == "D" else voicing[::-1][:4]  # up strokes: the top strings
                    for s, p in enumerate(strings):
                        w.add(p, t + k * beat / 2 + 0.012 * s, beat / 2, velocity - 10 * (stroke == "U"))
            elif texture == "arpeggio":
                for k, string in enumerate(picking):
                    p = voicing[min(string, len(voicing) - 1)]
                    w.add(p, t + k * beat / 2, (8 - k) * beat / 2, velocity - 5)
            else:
                _lead_bar(w, t, beat, tonic + 48, scale, degree, velocity, state)
            t, bar = t + 4 * beat, bar + 1
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program, name="guitar")
    inst.notes = limit_polyphony(w.notes, PARTS["guitar"]["guitar"][2], seconds)
    midi.instruments.append(inst)
    return midi


def isolated_class_notes(name: str, arrangement: str, velocity: int, program: int) -> pretty_midi.PrettyMIDI:
    """Every key of a class's range in turn, held ``ISOLATED_HOLD_SECONDS``."""
    low, high, _ = PARTS[arrangement][name]
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program, name=name)
    for i, pitch in enumerate(range(low, high + 1)):
        start = 0.25 + i * ISOLATED_SPACING_SECONDS
        inst.notes.append(pretty_midi.Note(velocity, pitch, start, start + ISOLATED_HOLD_SECONDS))
    midi.instruments.append(inst)
    return midi


# --- planning and rendering ----------------------------------------------------------

def _draw_timbres(spec, split: str, seed) -> dict[str, str]:
    rng = np.random.default_rng([*seed, 11])
    pools = spec[f"{'test' if split == 'test' else 'train'}_timbres"]
    return {name: pools[name][int(rng.integers(len(pools[name])))] for name in PARTS[spec["arrangement"]]}


def plan_tracks(spec: dict) -> list[dict]:
    """Every track: id, split, its parts' timbres and a function making its MIDI (nothing
    is composed until it is called)."""
    spec = full_spec(spec)
    tracks = []
    splits = (("train", n_train_pieces(spec)), ("validation", spec["n_validation"]), ("test", spec["n_test"]))
    for split_index, (split, count) in enumerate(splits):
        for i in range(count):
            seed = [spec["seed"], split_index, i]
            parts = _draw_timbres(spec, split, seed)
            programs = {name: parse_timbre(t)[2] for name, t in parts.items()}

            def make(seed=seed, programs=programs):
                rng = np.random.default_rng(seed)
                if spec["arrangement"] == "guitar":
                    return compose_guitar(rng, spec["piece_seconds"], programs["guitar"])
                return compose_band(rng, spec["piece_seconds"], programs, spec["drums"])
            tracks.append({"track_id": f"{split}_{i:05d}", "split": split, "timbres": parts, "make": make})
    for name in PARTS[spec["arrangement"]]:
        for timbre in spec["train_timbres"][name]:
            font, bank, program = parse_timbre(timbre)
            for velocity in spec["isolated_velocities"]:
                tracks.append({"track_id": f"isolated_{name}_{Path(font).stem}_b{bank:03d}_p{program:03d}_v{velocity:03d}",
                               "split": "isolated", "timbres": {name: timbre},
                               "make": lambda n=name, v=velocity, p=program: isolated_class_notes(
                                   n, spec["arrangement"], v, p)})
    return tracks


def _render_part(inst: pretty_midi.Instrument, timbre: str, midi_path: Path, wav_path: Path, sample_rate: int):
    """One part alone: its MIDI (with the timbre's bank) and its audio, which is returned."""
    font, bank, _ = parse_timbre(timbre)
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    midi.instruments.append(inst)
    with atomic_path(midi_path) as tmp:
        midi.write(str(tmp))
        if bank and not inst.is_drum:
            select_bank(tmp, bank)
    render(midi_path, wav_path, find_soundfont(font), sample_rate)
    return soundfile.read(str(wav_path), dtype="float64")[0]


def render_track(track: dict, out_dir: Path, sample_rate: int) -> dict:
    """Write a track's MIDI, stems and mixture (the stems' sum, scaled by one gain that
    keeps it under full scale); return its manifest row."""
    track_id = track["track_id"]
    midi = track["make"]()
    midi_path, mix_path = out_dir / "midi" / f"{track_id}.mid", out_dir / "audio" / f"{track_id}.wav"
    stems_dir = stem_folder(mix_path)
    stems_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(midi_path) as tmp:
        midi.write(str(tmp))
    stems = {}
    for inst in midi.instruments:
        timbre = DRUM_KIT if inst.is_drum else track["timbres"][inst.name]
        stems[inst.name] = _render_part(inst, timbre, stems_dir / f"{inst.name}.mid", stems_dir / f"{inst.name}.wav",
                                        sample_rate)
    length = max(len(a) for a in stems.values())
    stems = {name: np.pad(a, (0, length - len(a))) for name, a in stems.items()}
    gain = min(1.0, 0.9 / max(np.abs(sum(stems.values())).max(), 1e-9))
    quantized = {name: np.round(a * gain * 32768) / 32768 for name, a in stems.items()}
    for name, audio in quantized.items():
        with atomic_path(stems_dir / f"{name}.wav") as tmp:
            soundfile.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")
    with atomic_path(mix_path) as tmp:
        soundfile.write(str(tmp), np.clip(sum(quantized.values()), -1, 32767 / 32768), sample_rate,
                        subtype="PCM_16", format="WAV")
    if len(quantized) == 1:  # an isolated-note track is its one stem
        for path in stems_dir.iterdir():
            path.unlink()
        stems_dir.rmdir()
    return {"track_id": track_id, "split": track["split"], "audio_path": f"audio/{track_id}.wav",
            "midi_path": f"midi/{track_id}.mid", "duration": round(length / sample_rate, 4),
            "instrument": ";".join(f"{name}={t}" for name, t in track["timbres"].items())}


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int, jobs: int = 1, log=print) -> None:
    """Compose and render the corpus beside ``manifest_path`` on ``jobs`` threads, and
    write the manifest last."""
    full = full_spec(spec)
    out_dir = Path(manifest_path).parent
    tracks = plan_tracks(full)
    for pools in (full["train_timbres"], full["test_timbres"]):
        for timbre in (t for pool in pools.values() for t in pool):
            find_soundfont(parse_timbre(timbre)[0])
    (out_dir / "midi").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    log(f"rendering {len(tracks)} {full['arrangement']} tracks ({n_train_pieces(full)} training pieces of "
        f"{full['piece_seconds']} s, parts {', '.join(PARTS[full['arrangement']])}) on {jobs} thread(s)")
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for n, row in enumerate(pool.map(lambda t: render_track(t, out_dir, sample_rate), tracks), 1):
            rows.append(row)
            if n == len(tracks) or n % max(1, len(tracks) // 20) == 0:
                log(f"[{n}/{len(tracks)}] {row['track_id']} ({row['duration']:.1f} s)")
    write_manifest(rows, manifest_path)
