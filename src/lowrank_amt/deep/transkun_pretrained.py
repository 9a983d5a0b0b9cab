"""Pretrained Transkun 2.0 (Yan & Duan, ISMIR 2024; the pip package ``transkun``, MIT),
the piano transcription reference, run with the project's torch alone.

The wheel ships the MAESTRO-trained weights (``pretrained/2.0.pt``) and their config
(``pretrained/2.0.conf``, JSON); ``make setup`` installs it without its dependencies
(it lists a second torch build's torchaudio, tensorboard and training tools). Its model
imports torchaudio for one thing, the mel filterbank of its front end, whose values the
weights file holds anyway (the ``freq2mels`` buffer): where torchaudio is missing, a
module with that one function (``melscale_fbanks``, torchaudio's HTK formula) stands in,
and a test holds it equal to the weights' buffer. Weights load with
``torch.load(weights_only=True)``.

Transkun writes notes (onset, offset, pitch, velocity: a semi-Markov CRF over each key's
intervals), not posteriorgrams. For the shared stages they are written on a
``FRAME_RATE`` grid (``notes_to_outputs``): ``note`` is 1 while a key's note sounds,
``onset`` holds velocity / 127 at its first frame, ``pedal`` is 1 while the sustain pedal
is down; ``outputs_to_notes`` reads the notes back, exact to half a frame (5 ms), and
``decode.pedal_spans`` the pedal.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import sys
import types
import warnings
from importlib import util
from pathlib import Path

import numpy as np
import torch

from ..constants import MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from ..runtime.io import check_zip

#: The model's audio rate (its config's ``fs``; a test holds them equal).
SAMPLE_RATE = 44100
#: The grid its notes are written on here (frames per second), and the hop it makes.
FRAME_RATE = 100
HOP_LENGTH = SAMPLE_RATE // FRAME_RATE
#: The pitch its notes of the sustain pedal carry (the soft pedal's is -67, left out).
SUSTAIN_PITCH = -64


def package_folder() -> Path:
    try:
        import transkun
    except ImportError as exc:
        raise LowrankAmtError("the transkun package is not installed: `make setup` installs it "
                              "(pip install --no-deps transkun==2.0.1)") from exc
    return Path(transkun.__file__).parent


def melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                    norm=None, mel_scale: str = "htk") -> torch.Tensor:
    """Triangular mel filters (n_freqs x n_mels) on the HTK mel scale, as torchaudio
    computes them (no normalisation)."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    to_mel = lambda hz: 2595.0 * math.log10(1.0 + hz / 700.0)  # noqa: E731
    edges = 700.0 * (10 ** (torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    widths = edges[1:] - edges[:-1]
    slopes = edges.unsqueeze(0) - freqs.unsqueeze(1)
    rising, falling = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def _torchaudio_stand_in() -> None:
    if "torchaudio" not in sys.modules and util.find_spec("torchaudio") is None:
        module = types.ModuleType("torchaudio")
        module.functional = types.SimpleNamespace(melscale_fbanks=melscale_fbanks)
        sys.modules["torchaudio"] = module


@functools.lru_cache(maxsize=2)
def load_model(device: str = "cpu"):
    """The pretrained model, in evaluation mode on ``device``."""
    folder = package_folder() / "pretrained"
    _torchaudio_stand_in()
    with warnings.catch_warnings():  # its CRF is compiled with torch.jit.script, which warns it is deprecated
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        from transkun import ModelTransformer
    config = ModelTransformer.Config()
    config.__dict__.update(read_config(folder / "2.0.conf"))
    model = ModelTransformer.TransKun(conf=config)
    model.load_state_dict(read_weights(folder / "2.0.pt"))
    return model.to(device).eval()


#: What to do about a damaged file of the transkun package.
REINSTALL = "reinstall it: pip install --force-reinstall --no-deps transkun==2.0.1"


def read_config(path: Path) -> dict:
    """The model's config from the package's ``2.0.conf``; a damaged file is one error naming it."""
    try:
        return json.loads(Path(path).read_text())["Model"]["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LowrankAmtError(f"Transkun config {path} is missing or damaged ({exc}); {REINSTALL}") from exc


def read_weights(path: Path) -> dict:
    """The checkpoint's ``state_dict``, checked like the project's own archives (a torch
    checkpoint is a zip: every member against its CRC-32) before torch reads it."""
    check_zip(path, "Transkun checkpoint", REINSTALL)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise LowrankAmtError(f"Transkun checkpoint {path} cannot be read ({exc}); {REINSTALL}") from exc


def transcribe_notes(audio: np.ndarray, model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intervals, pitches, velocities) of mono ``audio`` at ``SAMPLE_RATE``, in onset order;
    its pedals come as notes of pitch -64 (sustain) and -67 (soft)."""
    device = next(model.parameters()).device
    with torch.no_grad(), warnings.catch_warnings():
        # its layers call torch.utils.checkpoint, which warns at inference about training matters
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.utils\.checkpoint|torch\._dynamo")
        notes = model.transcribe(torch.from_numpy(np.ascontiguousarray(audio, np.float32)[:, None]).to(device))
    notes = sorted(notes, key=lambda n: (n.start, n.pitch))
    intervals = np.array([[n.start, n.end] for n in notes], float).reshape(-1, 2)
    return intervals, np.array([n.pitch for n in notes], int), np.array([n.velocity for n in notes], int)


def notes_to_outputs(intervals, pitches, velocities, n_frames: int, frame_rate: float = FRAME_RATE) -> dict:
    """Notes on a frame grid: ``note`` (88 x n_frames) 1 while a note sounds, ``onset``
    velocity / 127 at its first frame, ``pedal`` (1 x n_frames) 1 while the sustain pedal
    (pitch ``SUSTAIN_PITCH``) is down; other notes outside the piano's keys are left out."""
    note, onset = np.zeros((N_KEYS, n_frames), np.float32), np.zeros((N_KEYS, n_frames), np.float32)
    pedal = np.zeros((1, n_frames), np.float32)
    for (start, end), pitch, velocity in zip(intervals, pitches, velocities):
        key, first = int(pitch) - MIDI_MIN, int(round(start * frame_rate))
        stop = max(first + 1, int(round(end * frame_rate)))
        if pitch == SUSTAIN_PITCH:
            pedal[0, first:stop] = 1.0
        elif 0 <= key < N_KEYS and first < n_frames:
            note[key, first:stop] = 1.0
            onset[key, first] = max(int(velocity), 1) / 127.0
    return {"note": note, "onset": onset, "pedal": pedal}


def outputs_to_notes(outputs: dict, frame_rate: float = FRAME_RATE):
    """(intervals, pitches, velocities) back from ``notes_to_outputs``' arrays: a note
    starts where ``onset`` is set and lasts while ``note`` holds, up to the next onset."""
    note, onset = np.asarray(outputs["note"], np.float32) > 0.5, np.asarray(outputs["onset"], np.float32)
    found = []
    for key, first in zip(*np.nonzero(onset > 0)):
        stop = first + 1
        while stop < note.shape[1] and note[key, stop] and onset[key, stop] == 0:
            stop += 1
        found.append((first / frame_rate, stop / frame_rate, key + MIDI_MIN, int(round(onset[key, first] * 127))))
    found.sort()
    intervals = np.array([f[:2] for f in found], float).reshape(-1, 2)
    return intervals, np.array([f[2] for f in found], int), np.array([f[3] for f in found], int)


def count_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def versions() -> dict:
    from importlib.metadata import version

    import transkun
    return {f"{transkun.__name__}_version": version(transkun.__name__)}
