"""Notes -> a quantised two-staff piano score in MusicXML (``transcribe --musicxml``).

Conventions. Note times are seconds; score positions are in beats (quarter notes) from
the score's first beat, the beat at or before the first onset, which starts bar 1; bars
hold four beats (4/4: the meter is not estimated). Steps, each a function here:

1. **Beats** (``beat_times``): librosa's dynamic-programming beat tracker (Ellis 2007)
   run on an onset envelope built from the transcribed notes (a pulse of each onset's
   velocity, at ``ENVELOPE_RATE``), so the beats come from what the model heard without
   a second pass over the audio; each beat then moved onto the onsets right at it
   (``refine_beats``). With a tempo given, the beats are a constant grid at
   that tempo in the phase of the beats the tracker finds at it. Times between beats are
   placed by linear interpolation, outside them by the nearest beat period.
2. **Grid** (``quantise``). Each beat is divided into the number of cells of
   ``SUBDIVISIONS`` (1, 2, 3 or 4) that fits the onsets falling in it best: the mean
   squared distance to the grid in beats plus ``GRID_PENALTY`` times the grid's
   complexity, so that a finer grid is taken only where the onsets ask for it. Onsets go
   to their nearest cell; offsets to the nearest cell of their own beat's grid, at least
   one cell after the onset. Positions are exact fractions.
3. **Hands** (``split_hands``): notes at or above ``split`` (default C4, MIDI 60) on the
   upper (treble) staff, the rest on the lower (bass) staff. Within a staff, notes that
   start together form a chord that lasts until the staff's next chord begins (one voice
   per staff; the offsets a transcription gives are its least reliable part).
4. **Key** (``estimate_key``): the Krumhansl-Kessler profile best correlated with the
   duration-weighted pitch-class histogram; pitches are spelled in its key signature
   (sharps or flats; a minor key's leading tone as a raised seventh).
``write_musicxml`` builds the score with music21, which is imported only there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import LowrankAmtError
from ..runtime.io import atomic_path

ENVELOPE_RATE = 100.0  # frames per second of the onset envelope given to the beat tracker
ENVELOPE_SMOOTHING_SECONDS = 0.02
#: librosa's tracker: how strictly beats keep the tempo (its default 100), the centre of
#: its tempo prior (its default 120 BPM); both picked on the round trip's validation
#: pieces (bench/score_round_trip.py --validation).
TIGHTNESS = 400.0
START_BPM = 120.0
SNAP_FRACTION = 0.1  # of a beat period: onsets this near a tracked beat place it
#: cells per beat -> the complexity the grid choice charges for it
SUBDIVISIONS = {1: 0.0, 2: 1.0, 3: 2.0, 4: 2.0}
GRID_PENALTY = 0.004  # beats squared per unit of complexity (about 0.06 beat of rms error)
BEATS_PER_BAR = 4
#: An onset this close before a beat (in beats) belongs to that beat's grid.
BEAT_LEAD = 0.125
DEFAULT_SPLIT = 60  # C4
#: Krumhansl & Kessler (1982) key profiles, from the tonic up.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
FLAT_NAMES = ("C", "D-", "D", "E-", "E", "F", "G-", "G", "A-", "A", "B-", "B")


@dataclass(frozen=True)
class ScoreNote:
    """A note of the score: MIDI pitch, onset and offset in beats from the first beat."""
    pitch: int
    onset: Fraction
    offset: Fraction


def check_tempo(tempo: float | None) -> None:
    if tempo is not None and not 20 <= tempo <= 400:
        raise LowrankAmtError(f"--tempo must be between 20 and 400 BPM, got {tempo}")


def beat_times(onsets, velocities=None, tempo: float | None = None) -> np.ndarray:
    """Beat times (s) that librosa's tracker finds in the envelope of ``onsets`` (each a
    pulse of its velocity), at ``tempo`` (BPM) where it is given."""
    onsets = np.asarray(onsets, dtype=float)
    if onsets.size == 0:
        raise LowrankAmtError("a score needs notes; the transcription has none")
    check_tempo(tempo)
    import librosa
    weights = np.ones_like(onsets) if velocities is None else np.asarray(velocities, dtype=float) / 127
    envelope = np.zeros(int(onsets.max() * ENVELOPE_RATE) + int(2 * ENVELOPE_RATE))
    np.add.at(envelope, np.round(onsets * ENVELOPE_RATE).astype(int), weights)
    width = ENVELOPE_SMOOTHING_SECONDS * ENVELOPE_RATE
    kernel = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    envelope = np.convolve(envelope, kernel, mode="same")
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=ENVELOPE_RATE, hop_length=1, units="time",
                                       bpm=tempo, tightness=TIGHTNESS, start_bpm=START_BPM)
    if len(beats) < 2 or tempo is not None:  # a constant grid, in phase with the beats found
        period = 60.0 / (tempo or 60.0)
        turns = np.exp(2j * np.pi * np.asarray(beats) / period)  # the beats' circular mean phase
        phase = float(np.angle(turns.mean()) / (2 * np.pi) * period) if len(beats) else onsets.min()
        first = phase - period * np.ceil((phase - onsets.min()) / period)
        return first + period * np.arange(int((onsets.max() - first) / period) + 2)
    return refine_beats(np.asarray(beats, dtype=float), onsets, weights)


def refine_beats(beats, onsets, weights) -> np.ndarray:
    """Each beat moved to the weighted mean of the onsets within ``SNAP_FRACTION`` of a beat
    period of it (the beats in between moved with their neighbours): the tracker's beats
    lie on its envelope's frames, with a period rounded to a whole frame that drifts."""
    period = np.gradient(beats) if len(beats) > 1 else np.ones_like(beats)
    shift = np.full(len(beats), np.nan)
    for k, beat in enumerate(beats):
        near = np.abs(onsets - beat) <= SNAP_FRACTION * period[k]
        if near.any():
            shift[k] = np.average(onsets[near] - beat, weights=weights[near])
    known = ~np.isnan(shift)
    if not known.any():
        return beats
    return beats + np.interp(np.arange(len(beats)), np.flatnonzero(known), shift[known])


def beat_positions(times, beats) -> np.ndarray:
    """Positions in beats of ``times`` (s) on the beat grid ``beats`` (beat i at position
    i), extended before the first and after the last beat by their neighbours' period."""
    times, beats = np.asarray(times, dtype=float), np.asarray(beats, dtype=float)
    inside = np.interp(times, beats, np.arange(len(beats)))
    before = (times - beats[0]) / (beats[1] - beats[0])
    after = len(beats) - 1 + (times - beats[-1]) / (beats[-1] - beats[-2])
    return np.where(times < beats[0], before, np.where(times > beats[-1], after, inside))


def choose_subdivisions(positions) -> dict[int, int]:
    """Beat index -> cells per beat (``SUBDIVISIONS``) fitting the onsets in that beat
    (those within ``BEAT_LEAD`` of a beat before it belong to it too)."""
    positions = np.asarray(positions, dtype=float)
    beat_of = np.floor(positions + BEAT_LEAD).astype(int)
    chosen = {}
    for beat in np.unique(beat_of):
        inside = positions[beat_of == beat] - beat

        def cost(cells):
            return np.mean((inside - np.round(inside * cells) / cells) ** 2) + GRID_PENALTY * SUBDIVISIONS[cells]
        chosen[int(beat)] = min(SUBDIVISIONS, key=cost)
    return chosen


def _snap(position: float, cells: int) -> Fraction:
    return Fraction(int(round(position * cells)), cells)


def quantise(onsets, offsets, pitches, beats) -> list[ScoreNote]:
    """Notes (seconds) as ``ScoreNote``s on the grid of ``beats``, in the order given;
    positions count from the beat at or before the first quantised onset."""
    on, off = beat_positions(onsets, beats), beat_positions(offsets, beats)
    cells = choose_subdivisions(on)
    notes = []
    for start, end, pitch in zip(on, off, pitches):
        grid = cells[int(math.floor(start + BEAT_LEAD))]
        onset = _snap(start, grid)
        offset = max(_snap(end, cells.get(int(math.floor(end)), grid)), onset + Fraction(1, grid))
        notes.append(ScoreNote(int(pitch), onset, offset))
    origin = math.floor(min(n.onset for n in notes))
    return [ScoreNote(n.pitch, n.onset - origin, n.offset - origin) for n in notes]


def split_hands(notes: list[ScoreNote], split: int = DEFAULT_SPLIT) -> tuple[list, list]:
    """(upper staff, lower staff): each a list of (onset, duration, pitches) chords, the
    notes starting together on one staff joined, each chord lasting until the staff's
    next chord (or its own longest offset, if sooner)."""
    staves = []
    for upper in (True, False):
        chords: dict[Fraction, list[ScoreNote]] = {}
        for note in notes:
            if (note.pitch >= split) == upper:
                chords.setdefault(note.onset, []).append(note)
        starts = sorted(chords)
        staff = []
        for i, start in enumerate(starts):
            end = max(n.offset for n in chords[start])
            if i + 1 < len(starts):
                end = min(end, starts[i + 1])
            staff.append((start, end - start, tuple(sorted({n.pitch for n in chords[start]}))))
        staves.append(staff)
    return staves[0], staves[1]


def estimate_key(pitches, durations) -> tuple[int, str]:
    """(tonic pitch class, 'major' or 'minor') whose Krumhansl-Kessler profile correlates
    best with the histogram of pitch classes weighted by duration."""
    histogram = np.zeros(12)
    np.add.at(histogram, np.asarray(pitches, dtype=int) % 12, np.asarray(durations, dtype=float))
    best, best_r = (0, "major"), -np.inf
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1] if histogram.std() > 0 else 0.0
            if r > best_r:
                best, best_r = (tonic, mode), r
    return best


def key_fifths(tonic: int, mode: str) -> int:
    """Sharps (> 0) or flats (< 0) of the key signature, -5 (D-flat major) to 6 (F-sharp)."""
    major_tonic = (tonic + 3) % 12 if mode == "minor" else tonic
    return (major_tonic * 7 + 5) % 12 - 5


def pitch_names(tonic: int, mode: str) -> list[str]:
    """Pitch class -> its name in the key (music21 spelling: '-' is a flat)."""
    names = list(FLAT_NAMES if key_fifths(tonic, mode) < 0 else SHARP_NAMES)
    if mode == "minor":  # the leading tone: the natural seventh's letter, raised
        seventh = names[(tonic - 2) % 12]
        names[(tonic - 1) % 12] = seventh[0] + {"-": "", "": "#", "#": "##"}[seventh[1:]]
    return names


def _pieces(start: Fraction, length: Fraction) -> list[tuple[Fraction, Fraction]]:
    """A chord's span cut where notation needs a tie: the part of its first beat, whole
    beats, and the part of its last beat, so that each piece is a written duration."""
    end, cuts = start + length, [start]
    for cut in (Fraction(math.ceil(start)), Fraction(math.floor(end))):
        if cuts[-1] < cut < end:
            cuts.append(cut)
    cuts.append(end)
    return [(a, b - a) for a, b in zip(cuts, cuts[1:])]


def _staff(m21, chords, names, clef, fifths, bpm, length: Fraction):
    """One music21 PartStaff of ``chords`` (onset, duration, pitches), rests between."""
    staff = m21.stream.PartStaff()
    staff.insert(0, clef)
    staff.insert(0, m21.key.KeySignature(fifths))
    staff.insert(0, m21.meter.TimeSignature(f"{BEATS_PER_BAR}/4"))
    if bpm is not None:
        staff.insert(0, m21.tempo.MetronomeMark(number=round(bpm)))
    position = Fraction(0)
    for onset, duration, pitches in chords:
        if onset > position:
            for start, part in _pieces(position, onset - position):
                staff.insert(start, m21.note.Rest(quarterLength=part))
        pieces = _pieces(onset, duration)
        for i, (start, part) in enumerate(pieces):
            chord = m21.chord.Chord([f"{names[p % 12]}{p // 12 - 1}" for p in pitches], quarterLength=part)
            if len(pieces) > 1:
                chord.tie = m21.tie.Tie("start" if i == 0 else "stop" if i == len(pieces) - 1 else "continue")
            staff.insert(start, chord)
        position = onset + duration
    if length > position:
        for start, part in _pieces(position, length - position):
            staff.insert(start, m21.note.Rest(quarterLength=part))
    return staff


def write_musicxml(path, notes: list[ScoreNote], *, bpm: float | None = None, split: int = DEFAULT_SPLIT,
                   title: str = "") -> tuple[int, str]:
    """Write ``notes`` as a two-staff piano score (MusicXML) at ``path``; returns the key
    (tonic pitch class, mode) it is written in."""
    import music21 as m21
    tonic, mode = estimate_key([n.pitch for n in notes], [float(n.offset - n.onset) for n in notes])
    names, fifths = pitch_names(tonic, mode), key_fifths(tonic, mode)
    last = max((n.offset for n in notes), default=Fraction(BEATS_PER_BAR))
    length = BEATS_PER_BAR * math.ceil(last / BEATS_PER_BAR)
    upper, lower = split_hands(notes, split)
    score = m21.stream.Score()
    score.insert(0, m21.metadata.Metadata(title=title))
    staves = [_staff(m21, upper, names, m21.clef.TrebleClef(), fifths, bpm, length),
              _staff(m21, lower, names, m21.clef.BassClef(), fifths, None, length)]
    for staff in staves:
        score.insert(0, staff)
    score.insert(0, m21.layout.StaffGroup(staves, name="Piano", symbol="brace"))
    with atomic_path(path) as tmp:
        score.write("musicxml", fp=str(tmp), makeNotation=True)
    return tonic, mode


def transcription_score(notes, tempo: float | None = None) -> tuple[list[ScoreNote], float]:
    """A transcription's notes ``(intervals, pitches, velocities)`` quantised on the beats
    tracked in them (or at ``tempo``), with the median tempo (BPM) of those beats."""
    intervals, pitches, velocities = notes
    if len(pitches) == 0:
        return [], tempo or 120.0
    beats = beat_times(intervals[:, 0], velocities, tempo)
    return quantise(intervals[:, 0], intervals[:, 1], pitches, beats), 60.0 / float(np.median(np.diff(beats)))


def write_score(path, notes, tempo: float | None = None, split: int = DEFAULT_SPLIT, title: str = "",
                log=print) -> None:
    """A recording's notes as a MusicXML piano score at ``path``; says its tempo, key and
    length."""
    quantised, bpm = transcription_score(notes, tempo)
    tonic, mode = write_musicxml(path, quantised, bpm=bpm, split=split, title=title)
    bars = math.ceil(max((n.offset for n in quantised), default=1) / BEATS_PER_BAR)
    log(f"{title}: score in {BEATS_PER_BAR}/4 at {bpm:.0f} BPM ({'given' if tempo else 'tracked'}), "
        f"{pitch_names(tonic, mode)[tonic]} {mode}, {bars} bars")
