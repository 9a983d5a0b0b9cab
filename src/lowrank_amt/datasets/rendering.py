"""Rendering MIDI to audio with fluidsynth, and the soundfonts it renders with.

A timbre is a preset of a soundfont: ``SOUNDFONT:PROGRAM`` or ``SOUNDFONT:BANK:PROGRAM``
(``parse_timbre``), SOUNDFONT being a path, a file name in Debian's soundfont folders
(``SOUNDFONT_DIRS``), or ``auto`` (the first of ``SOUNDFONT_CANDIDATES`` installed). The
MuseScore General soundfonts are refused by name: they are kept for evaluation outside
the project. The same MIDI, soundfont and rate give the same WAV bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import mido
import numpy as np
import soundfile

from ..errors import LowrankAmtError
from ..runtime.io import atomic_path

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


def font_key(setting: str) -> str:
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
