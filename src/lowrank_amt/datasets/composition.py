"""Composed piano pieces as MIDI: the structure of the synthetic corpora's music.

``compose_piece`` writes a piece with a key, a tempo that changes between sections, and
sections of two bars over a chord progression (``PROGRESSIONS``), each in one texture
(``TEXTURES``: block chords, scales, arpeggios, a melody over an accompaniment, repeated
notes, wide or narrow voicings), with dynamics, humanised timing and, in some pieces,
the sustain pedal (CC64), at most ``max_polyphony`` keys at once. ``isolated_notes``
plays every key in turn, as MAPS ISOL does. Everything depends on the generator given.
"""

from __future__ import annotations

import numpy as np
import pretty_midi

from ..constants import MIDI_MAX, MIDI_MIN

ISOLATED_HOLD_SECONDS = 1.0
ISOLATED_SPACING_SECONDS = 1.5
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: a leading tone for the dominant
#: Chord progressions as scale degrees (0 = I), one chord per bar.
PROGRESSIONS = ((0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0), (0, 4, 5, 3), (5, 3, 0, 4),
                (0, 3, 1, 4), (0, 0, 3, 4), (3, 4, 2, 5))
TEXTURES = ("chords", "scale", "arpeggio", "melody", "repeated", "wide", "narrow")
#: Standard deviation of a humanised onset (s).
TIMING_JITTER_SECONDS = 0.008
#: Largest change of tempo between sections, as a fraction of the piece's base tempo.
TEMPO_SPREAD = 0.2
#: Shortest note kept when the polyphony limit shortens a note (s).
MIN_NOTE_SECONDS = 0.05


def _fit(pitch: int, low: int, high: int) -> int:
    """Move ``pitch`` by octaves into [low, high]."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


class NoteWriter:
    """Collects notes of one piece with humanised timing (onsets moved by a normal draw of
    ``jitter`` seconds' deviation), dynamics and range folding. The draws are taken with
    ``jitter`` 0 too, so that the rest of the piece stays the same."""

    def __init__(self, rng, low, high, jitter: float = TIMING_JITTER_SECONDS):
        self.rng, self.low, self.high, self.jitter = rng, low, high, jitter
        self.notes: list[pretty_midi.Note] = []

    def add(self, pitch, start, duration, velocity):
        jitter = float(self.rng.normal(0.0, self.jitter))
        start = max(0.0, start + jitter)
        velocity = int(np.clip(round(velocity + self.rng.normal(0, 6)), 1, 127))
        self.notes.append(pretty_midi.Note(velocity, _fit(int(pitch), self.low, self.high),
                                           round(start, 4), round(start + max(duration, MIN_NOTE_SECONDS), 4)))


def degree_pitch(tonic: int, scale, degree: int) -> int:
    """MIDI pitch of a scale degree counted from ``tonic`` (degree may exceed 7 or be < 0)."""
    octave, step = divmod(degree, 7)
    return tonic + 12 * octave + scale[step]


def chord_pitches(tonic, scale, root_degree, size):
    """Pitches of a chord stacked in thirds on ``root_degree``, ``size`` notes."""
    return [degree_pitch(tonic, scale, root_degree + 2 * k) for k in range(size)]


def _chord_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """Block chords over a bass, struck 1, 2 or 4 times (``wide``: spread over three
    octaves; ``narrow``: a close cluster within an octave)."""
    rng, bar = w.rng, 4 * beat
    size = int(rng.integers(2, max(3, max_polyphony)))  # leaves room for the bass
    chord = chord_pitches(base, scale, degree, size)
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
        p = degree_pitch(base, scale, d)
        w.add(p, t0 + k * step * beat, 0.9 * step * beat, velocity + 4 * (k % 4 == 0))
        if parallel and max_polyphony > 1:
            w.add(degree_pitch(base, scale, d - parallel), t0 + k * step * beat, 0.9 * step * beat, velocity - 8)


def _arpeggio_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """The chord broken up and down over two octaves, notes released or held."""
    rng, bar = w.rng, 4 * beat
    step = float(rng.choice([0.5, 0.25, 1 / 3]))
    n = int(round(4 / step))
    tones = chord_pitches(base - 12, scale, degree, 3)
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
    low_chord = chord_pitches(base - 12, scale, degree, 3)
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
        w.add(degree_pitch(base - 12, scale, d), t, 0.95 * length, velocity + 10)
        d += int(rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3]))
        t += length


def _repeated_bar(w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony):
    """One key re-struck (optionally with its lower octave) over a held chord."""
    rng, bar = w.rng, 4 * beat
    step = float(rng.choice([0.5, 0.25, 1 / 3]))
    n = int(round(4 / step))
    pitch = degree_pitch(base, scale, degree + int(rng.choice([0, 2, 4])))
    octave = max_polyphony > 2 and rng.random() < 0.4
    for k in range(n):
        start = t0 + k * step * beat
        w.add(pitch, start, 0.6 * step * beat, velocity + 6 * (k % 2 == 0))
        if octave:
            w.add(pitch - 12, start, 0.6 * step * beat, velocity - 5)
    for p in chord_pitches(base - 12, scale, degree, 3)[: max(0, max_polyphony - 2)]:
        w.add(p, t0, 0.95 * bar, velocity - 20)


#: texture -> the function writing one bar of it
_BARS = {"chords": _chord_bar, "wide": _chord_bar, "narrow": _chord_bar, "scale": _scale_bar,
         "arpeggio": _arpeggio_bar, "melody": _melody_bar, "repeated": _repeated_bar}


def _bar(w: NoteWriter, texture, t0, beat, tonic, scale, degree, centre, velocity, max_polyphony):
    """Write one bar (4 beats from ``t0``) of ``texture`` over the chord on ``degree``."""
    base = tonic + 12 * ((centre - tonic) // 12)  # tonic in the octave of the register centre
    if texture in _BARS:
        _BARS[texture](w, texture, t0, beat, base, centre, scale, degree, velocity, max_polyphony)


def limit_polyphony(notes: list[pretty_midi.Note], max_polyphony: int, seconds: float) -> list[pretty_midi.Note]:
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
                  pedal: bool = False, tempo_spread: float = TEMPO_SPREAD,
                  jitter: float = TIMING_JITTER_SECONDS) -> pretty_midi.PrettyMIDI:
    """A structured piano piece of ``seconds`` (its last note ends by then).

    Key and mode are drawn once; the piece is a run of sections of two bars, each with its
    own texture (one of ``TEXTURES``), register, tempo (base tempo 60-150 BPM, varied by
    up to ``tempo_spread`` per section), dynamic level and crescendo, over a chord
    progression. With ``pedal``, CC64 is pressed after each chord change and released
    before the next. With ``tempo_spread`` 0 the tempo is constant and written in the MIDI
    file, and its first bar starts with its first note (a known score: with ``jitter`` 0
    every onset lies on its beat's grid); the other arguments draw the same piece.
    """
    low, high = pitch_range
    tonic = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    base_bpm = float(rng.uniform(60, 150))
    writer = NoteWriter(rng, low, high, jitter)
    pedal_changes: list[pretty_midi.ControlChange] = []
    t = float(rng.uniform(0.05, 0.3))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    bar_index = 0
    while t < seconds - 0.2:
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
        beat = 60.0 / (base_bpm * float(rng.uniform(1 - tempo_spread, 1 + tempo_spread)))
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
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0 if tempo_spread else base_bpm)
    piano = pretty_midi.Instrument(program=program, name="piano")
    piano.notes = limit_polyphony(writer.notes, max_polyphony, seconds)
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
