"""The embedded synthetic piano dataset: generated MIDI rendered by fluidsynth.

Pieces are random polyphonic note streams (the data issue adds musical structure);
isolated notes of every piano key are rendered one after the other into one file per
velocity, like MAPS ISOL, for supervised template learning.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile

from ..constants import MIDI_MAX, MIDI_MIN
from ..errors import LowrankAmtError
from ..io import atomic_path
from .manifest import write_manifest

#: Where Debian's packages put General MIDI soundfonts, best first.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "/usr/share/sounds/sf3/MuseScore_General.sf3",  # musescore-general-soundfont-small
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # timgm6mb-soundfont
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = "install Debian's fluid-soundfont-gm (apt-get install fluid-soundfont-gm)"

ISOLATED_HOLD_SECONDS = 1.0
ISOLATED_SPACING_SECONDS = 1.5


def find_soundfont(setting: str = "auto") -> Path:
    """Resolve the ``soundfont`` config value to an existing file, or explain what to do."""
    if setting != "auto":
        path = Path(setting)
        if not path.is_file():
            raise LowrankAmtError(f"soundfont {path} does not exist; fix 'datasets.<name>.soundfont' or {INSTALL_HINT}")
        return path
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise LowrankAmtError(
        f"no General MIDI soundfont found (looked in {', '.join(SOUNDFONT_CANDIDATES)}); "
        f"{INSTALL_HINT}, or set 'datasets.<name>.soundfont' to an .sf2 file"
    )


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise LowrankAmtError("fluidsynth is not on PATH; install it (apt-get install fluidsynth, or conda install -c conda-forge fluidsynth)")
    return exe


def random_piece(rng: np.random.Generator, seconds: float, max_polyphony: int,
                 pitch_range: tuple[int, int], program: int = 0) -> pretty_midi.PrettyMIDI:
    """A random polyphonic piece: chords of 1..max_polyphony notes at random times,
    with varied pitches, velocities and durations, never exceeding ``max_polyphony``
    sounding notes."""
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


def render(midi_path: Path, wav_path: Path, soundfont: Path, sample_rate: int) -> float:
    """Render a MIDI file to a mono-or-stereo 16-bit WAV with fluidsynth; return its duration."""
    with atomic_path(wav_path) as tmp:
        cmd = [find_fluidsynth(), "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5",
               "-r", str(sample_rate), "-T", "wav", "-O", "s16", "-F", str(tmp),
               str(soundfont), str(midi_path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or tmp.stat().st_size <= 44:
            raise LowrankAmtError(f"fluidsynth failed to render {midi_path}: {done.stderr.strip() or 'empty output'}")
    return soundfile.info(str(wav_path)).duration


def prepare(spec: dict, manifest_path: str | Path, sample_rate: int,
                      jobs: int = 1, log=print) -> None:
    """Generate and render the synthetic dataset described by ``spec`` (one ``datasets``
    entry of the config) beside ``manifest_path``, and write the manifest last."""
    out_dir = Path(manifest_path).parent
    soundfont = find_soundfont(spec["soundfont"])
    (out_dir / "midi").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    tracks: list[tuple[str, str, pretty_midi.PrettyMIDI]] = []
    for split_index, split in enumerate(("train", "validation", "test")):
        for i in range(spec[f"n_{split}"]):
            rng = np.random.default_rng([spec["seed"], split_index, i])
            piece = random_piece(rng, spec["piece_seconds"], spec["max_polyphony"],
                                 tuple(spec["pitch_range"]), spec["program"])
            tracks.append((f"{split}_{i:04d}", split, piece))
    for velocity in spec["isolated_velocities"]:
        tracks.append((f"isolated_v{velocity:03d}", "isolated", isolated_notes(velocity, spec["program"])))

    def make(track):
        track_id, split, midi = track
        midi_path = out_dir / "midi" / f"{track_id}.mid"
        wav_path = out_dir / "audio" / f"{track_id}.wav"
        with atomic_path(midi_path) as tmp:
            midi.write(str(tmp))
        duration = render(midi_path, wav_path, soundfont, sample_rate)
        return {"track_id": track_id, "split": split, "audio_path": f"audio/{track_id}.wav",
                "midi_path": f"midi/{track_id}.mid", "duration": round(duration, 4),
                "instrument": f"gm{spec['program']}:{soundfont.stem}"}

    log(f"rendering {len(tracks)} tracks with {soundfont} on {jobs} thread(s)")
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for n, row in enumerate(pool.map(make, tracks), 1):
            rows.append(row)
            log(f"[{n}/{len(tracks)}] {row['track_id']} ({row['duration']:.1f} s)")
    write_manifest(rows, manifest_path)
