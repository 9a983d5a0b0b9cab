"""A compact trainable transcription network in the spirit of Basic Pitch.

**What.** ``HarmonicNet`` follows Basic Pitch (Bittner et al., ICASSP 2022) rather than
Onsets and Frames (Hawthorne et al., ISMIR 2018): a harmonic stack of the cached CQT
(copies shifted by 12 * bins_per_semitone * log2(h) bins for harmonics h = 1/2, 1, 2, 3,
4, 5, so each key's partials line up in channels), a 5 x 5 convolution, an octave-wide
(39-bin at 3 bins per semitone) convolution, then two heads on the 88 piano keys: a
*note* posteriorgram (is the key sounding) and an *onset* posteriorgram that also sees
the note posteriorgram, as Basic Pitch does. Frequency is reduced from CQT bins to keys
by a convolution with stride ``bins_per_semitone``, centred on each key's bin. With the
default 16 channels it has 37,813 parameters (Basic Pitch: about 17 k, counted from its
ONNX graph without the fixed CQT kernels; Onsets and Frames: about 26 M).

**Why this one.** It is fully convolutional, so it trains on short segments and runs
on whole tracks of any length; it is small enough to train in seconds per epoch on a
laptop CPU, which keeps the training-size sweep affordable; its input is the same
cached CQT the low-rank models factorize, so the comparison isolates the model, not the
front end; and it needs no recurrent layers (Onsets and Frames' BiLSTMs are the bulk of
its cost and of its data hunger). Its note posteriorgram (88 x frames, in [0, 1]) goes
through the same decoder as every low-rank model's activations.

Conventions: features are CQT magnitudes (batch, bins, frames) with bins at
``bins_per_semitone`` per semitone from MIDI ``fmin_midi``; outputs are logits
(batch, 88, frames) for keys MIDI 21..108 at the feature frame rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..constants import MIDI_MAX, MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError

#: Harmonics stacked as input channels (Basic Pitch uses 0.5 and 1..7).
DEFAULT_HARMONICS = (0.5, 1, 2, 3, 4, 5)

#: Positive-class weight of the onset loss: onsets are about one frame per note, so
#: Basic Pitch weighs positive onset frames 0.95 against 0.05 for negatives (19:1).
ONSET_POSITIVE_WEIGHT = 19.0

#: Initial output probability of both heads (a key sounds in a few % of frames).
PRIOR_PROBABILITY = 0.02

#: Floor added before the log of CQT magnitudes (the CQT of silence is ~1e-7).
LOG_FLOOR = 1e-4


def harmonic_shifts(harmonics, bins_per_semitone: int) -> list[int]:
    """Bin offsets that bring harmonic h of a pitch onto the pitch's own bin."""
    return [int(round(12 * bins_per_semitone * math.log2(h))) for h in harmonics]


def harmonic_stack(features: torch.Tensor, shifts) -> torch.Tensor:
    """(batch, bins, frames) -> (batch, len(shifts), bins, frames): channel c at bin f
    holds bin f + shifts[c], zero where that bin is outside the spectrum."""
    n_bins = features.shape[1]
    channels = []
    for shift in shifts:
        shifted = torch.zeros_like(features)
        if shift >= 0:
            shifted[:, : n_bins - shift] = features[:, shift:]
        else:
            shifted[:, -shift:] = features[:, : n_bins + shift]
        channels.append(shifted)
    return torch.stack(channels, dim=1)


class HarmonicNet(nn.Module):
    """Harmonic-CQT CNN with note and onset heads; see the module docstring."""

    def __init__(self, n_bins: int, bins_per_semitone: int = 3, fmin_midi: int = MIDI_MIN,
                 channels: int = 16, harmonics=DEFAULT_HARMONICS):
        super().__init__()
        b = int(bins_per_semitone)
        n_semitones, rest = divmod(n_bins, b)
        if b < 1 or rest or fmin_midi > MIDI_MIN or fmin_midi + n_semitones - 1 < MIDI_MAX:
            raise LowrankAmtError(
                f"the network needs a CQT covering MIDI {MIDI_MIN}..{MIDI_MAX} with a whole number of bins "
                f"per semitone; got {n_bins} bins at {b} per semitone from MIDI {fmin_midi}")
        self.config = {"n_bins": n_bins, "bins_per_semitone": b, "fmin_midi": int(fmin_midi),
                       "channels": int(channels), "harmonics": [float(h) for h in harmonics]}
        self.shifts = harmonic_shifts(harmonics, b)
        self.first_key = MIDI_MIN - fmin_midi  # index of A0 among the network's semitones
        n_harmonics, wide = len(self.shifts), 12 * b + 3  # an octave and a semitone
        self.input_norm = nn.BatchNorm2d(1)
        self.trunk = nn.Sequential(
            nn.Conv2d(n_harmonics, channels, (5, 5), padding=(2, 2)), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 8, (wide, 3), padding=(wide // 2, 1)), nn.BatchNorm2d(8), nn.ReLU(),
        )
        # Stride b with a kernel of 2b + 1 and padding b: output k is centred on bin b * k,
        # the centre of semitone k (bin 0 is fmin).
        self.note_head = nn.Sequential(
            nn.Conv2d(8, 2 * channels, (2 * b + 1, 7), stride=(b, 1), padding=(b, 3)), nn.ReLU(),
            nn.Conv2d(2 * channels, 1, (7, 3), padding=(3, 1)),
        )
        self.onset_features = nn.Sequential(
            nn.Conv2d(n_harmonics, 2 * channels, (2 * b + 1, 5), stride=(b, 1), padding=(b, 2)),
            nn.BatchNorm2d(2 * channels), nn.ReLU(),
        )
        self.onset_head = nn.Conv2d(2 * channels + 1, 1, (3, 3), padding=(1, 1))
        # Start both heads at a low prior probability (Lin et al. 2017): keys are silent in
        # most frames, so the first steps need not spend themselves learning that.
        for head in (self.note_head[-1], self.onset_head):
            nn.init.constant_(head.bias, math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY)))
        #: Frames of context each output frame sees on either side (sum of time radii).
        self.time_radius = (2 + 1 + 3 + 1) + 1

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CQT magnitudes (batch, bins, frames) -> (note logits, onset logits), each
        (batch, 88, frames)."""
        x = torch.log(features.clamp_min(0) + LOG_FLOOR).unsqueeze(1)
        x = harmonic_stack(self.input_norm(x).squeeze(1), self.shifts)
        keys = slice(self.first_key, self.first_key + N_KEYS)
        note = self.note_head(self.trunk(x))[:, :, keys]
        onset_in = torch.cat([self.onset_features(x)[:, :, keys], torch.sigmoid(note)], dim=1)
        return note.squeeze(1), self.onset_head(onset_in).squeeze(1)


def n_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def onset_targets(roll: torch.Tensor) -> torch.Tensor:
    """Frames where a key turns on (roll is (batch, 88, frames)); frame 0 counts as an
    onset wherever the key is active."""
    previous = torch.nn.functional.pad(roll[..., :-1], (1, 0))
    return ((roll > 0) & (previous == 0)).to(torch.float32)


def offset_targets(roll: torch.Tensor) -> torch.Tensor:
    """Frames where a key sounds for the last time before a silent frame (or the end)."""
    following = torch.nn.functional.pad(roll[..., 1:], (0, 1))
    return ((roll > 0) & (following == 0)).to(torch.float32)


def offset_loss(offset_logits, roll, skip_last: bool) -> torch.Tensor:
    """Weighted binary cross-entropy of an offset head (offsets are as rare as onsets);
    ``skip_last`` drops a segment's last frame, where it is unknown whether a note ends."""
    offsets = offset_targets(roll.to(torch.float32))
    if skip_last:
        offset_logits, offsets = offset_logits[..., :-1], offsets[..., :-1]
    weight = torch.tensor(ONSET_POSITIVE_WEIGHT, device=offset_logits.device)
    return nn.functional.binary_cross_entropy_with_logits(offset_logits, offsets, pos_weight=weight)


def transcription_loss(note_logits, onset_logits, roll, skip_first_onset: bool) -> torch.Tensor:
    """Binary cross-entropy of the note head plus the weighted one of the onset head,
    each a mean over keys and frames. ``skip_first_onset`` drops frame 0 from the onset
    term, for segments cut from inside a track where it is unknown whether a key
    active at frame 0 started there."""
    roll = roll.to(torch.float32)
    onsets = onset_targets(roll)
    if skip_first_onset:
        onset_logits, onsets = onset_logits[..., 1:], onsets[..., 1:]
    note_loss = nn.functional.binary_cross_entropy_with_logits(note_logits, roll)
    weight = torch.tensor(ONSET_POSITIVE_WEIGHT, device=onset_logits.device)
    onset_loss = nn.functional.binary_cross_entropy_with_logits(onset_logits, onsets, pos_weight=weight)
    return note_loss + onset_loss


@torch.no_grad()
def track_logits(model: nn.Module, features: np.ndarray, device, chunk_frames: int = 2048):
    """(note logits, onset logits), each 88 x frames, of one whole track (bins x
    frames), computed in chunks with ``model.time_radius`` frames of context so that
    memory stays bounded on long tracks; the model must be in eval mode."""
    if model.training:
        raise ValueError("track_logits needs the model in eval mode (batch-norm running statistics)")
    n_frames, margin = features.shape[1], model.time_radius
    notes, onsets = [], []
    for start in range(0, n_frames, chunk_frames):
        lo, hi = max(0, start - margin), min(n_frames, start + chunk_frames + margin)
        x = torch.as_tensor(np.array(features[:, lo:hi], dtype=np.float32), device=device)
        note, onset = model(x.unsqueeze(0))[:2]  # a network may have further heads (offsets)
        keep = slice(start - lo, start - lo + min(chunk_frames, n_frames - start))
        notes.append(note[0, :, keep].cpu())
        onsets.append(onset[0, :, keep].cpu())
    return torch.cat(notes, dim=1), torch.cat(onsets, dim=1)
