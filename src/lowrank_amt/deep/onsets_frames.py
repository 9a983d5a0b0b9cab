"""Two deep transcription networks of real size on the cached CQT: an Onsets-and-Frames-style
network and a harmonic-attention network, sharing their heads.

**Onsets and Frames** (Hawthorne et al., ISMIR 2018), ``acoustic="conv"``: an acoustic stack
of three 3 x 3 convolutions (``channels``, ``channels``, 2 ``channels``, batch norm, ReLU,
frequency max-pooled by 2 after the second and the third), a linear layer to ``hidden``
features per frame; an onset head (a bidirectional LSTM of ``hidden`` / 2 units per
direction, then 88 logits), an offset head (88 logits), and a frame head that sees its own
88 linear outputs beside the onset and offset probabilities (gradients stopped, as in the
paper) through a second bidirectional LSTM: frames conditioned on onsets. One acoustic stack
feeds the three heads (the paper has one per head), which keeps the network trainable on a
CPU. ``channels`` 8 and ``hidden`` 96 give about 0.3 M parameters; 32 and 384 about 3.3 M
(the paper's model: about 26 M, on the log-mel spectrogram).

**Harmonic attention** (after "Piano transcription with harmonic attention", Wu, Wang, Li, Xu
& Cheng, ICASSP 2024; no public code was found, so the block is our reading of the idea),
``acoustic="harmonic_attention"``: two 3 x 3 convolutions, a strided convolution from CQT bins
to semitones, then ``HARMONIC_BLOCKS`` blocks of attention across frequency that follows the
harmonic series: at each semitone and frame, a query attends to the keys of the semitones a
harmonic above or below (``ATTENDED_HARMONICS``: 1/2, 1, 2, ..., 8), with a learned bias per
harmonic, and adds the attended values (a residual); then the same linear layer and heads as
above. What we chose: attention over these nine harmonic positions only (not all bins),
single-head, on semitones rather than CQT bins (a third of the memory), and the
Onsets-and-Frames heads after it.

Conventions: features (batch, bins, frames) of CQT magnitudes at ``bins_per_semitone`` per
semitone from MIDI ``fmin_midi``; outputs logits (batch, 88, frames) of the note (frame),
onset and offset heads, keys MIDI 21..108.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..constants import MIDI_MAX, MIDI_MIN, N_KEYS
from ..errors import LowrankAmtError
from .harmonic_net import LOG_FLOOR, PRIOR_PROBABILITY, harmonic_shifts, harmonic_stack

#: Harmonics a semitone attends to (their offsets rounded to semitones).
ATTENDED_HARMONICS = (0.5, 1, 2, 3, 4, 5, 6, 7, 8)

#: Harmonic-attention blocks of the harmonic-attention network.
HARMONIC_BLOCKS = 2

#: Frames of context each side for chunked inference: the recurrent heads see the whole
#: chunk, so chunks overlap by this much (their borders change outputs by little).
CONTEXT_FRAMES = 128


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvStack(nn.Module):
    """(batch, 1, bins, frames) -> (batch, frames, hidden): Onsets and Frames' acoustic model."""

    def __init__(self, n_bins: int, channels: int, hidden: int):
        super().__init__()
        self.convs = nn.Sequential(nn.BatchNorm2d(1), *_conv(1, channels), *_conv(channels, channels),
                                   nn.MaxPool2d((2, 1)),
                                   *_conv(channels, 2 * channels), nn.MaxPool2d((2, 1)), nn.Dropout(0.25))
        self.linear = nn.Sequential(nn.Linear(2 * channels * (n_bins // 4), hidden), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # (batch, channels, bins, frames)
        return self.linear(x.flatten(1, 2).transpose(1, 2))


class HarmonicAttention(nn.Module):
    """Attention of each semitone over its harmonics' semitones, on (batch, channels, 88+, frames)."""

    def __init__(self, channels: int, shifts: list[int]):
        super().__init__()
        self.shifts, self.scale = shifts, 1 / math.sqrt(channels)
        self.query, self.key, self.value = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.harmonic_bias = nn.Parameter(torch.zeros(len(shifts)))
        self.out = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))

    def harmonics(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> (B, C, H, F, T): at each semitone, the values of its harmonics'."""
        return harmonic_stack(x.flatten(0, 1), self.shifts).unflatten(0, x.shape[:2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, keys, values = self.query(x), self.harmonics(self.key(x)), self.harmonics(self.value(x))
        scores = (q.unsqueeze(2) * keys).sum(1) * self.scale + self.harmonic_bias[:, None, None]
        weights = torch.softmax(scores, dim=1).unsqueeze(1)                   # (B, 1, H, F, T)
        return torch.relu(x + self.out((weights * values).sum(2)))


class HarmonicAttentionStack(nn.Module):
    """(batch, 1, bins, frames) -> (batch, frames, hidden) through harmonic attention."""

    def __init__(self, n_bins: int, bins_per_semitone: int, channels: int, hidden: int):
        super().__init__()
        b = bins_per_semitone
        self.convs = nn.Sequential(nn.BatchNorm2d(1), *_conv(1, channels), *_conv(channels, channels),
                                   nn.Conv2d(channels, channels, (2 * b + 1, 1), stride=(b, 1), padding=(b, 0)),
                                   nn.BatchNorm2d(channels), nn.ReLU())
        shifts = harmonic_shifts(ATTENDED_HARMONICS, 1)  # in semitones
        self.blocks = nn.Sequential(*(HarmonicAttention(channels, shifts) for _ in range(HARMONIC_BLOCKS)))
        self.linear = nn.Sequential(nn.Linear(channels * (n_bins // b), hidden), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.convs(x))  # (batch, channels, semitones, frames)
        return self.linear(x.flatten(1, 2).transpose(1, 2))


class OnsetFrameHeads(nn.Module):
    """(batch, frames, hidden) -> note, onset and offset logits (batch, 88 x classes,
    frames; class-major, one set of 88 per instrument class)."""

    def __init__(self, hidden: int, n_classes: int = 1):
        super().__init__()
        half, n_out = max(1, hidden // 2), N_KEYS * n_classes
        self.onset_lstm = nn.LSTM(hidden, half, batch_first=True, bidirectional=True)
        self.onset = nn.Linear(2 * half, n_out)
        self.offset = nn.Linear(hidden, n_out)
        self.frame = nn.Linear(hidden, n_out)
        self.combined_lstm = nn.LSTM(3 * n_out, half, batch_first=True, bidirectional=True)
        self.note = nn.Linear(2 * half, n_out)
        prior = math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY))
        for head in (self.onset, self.offset, self.note):
            nn.init.constant_(head.bias, prior)

    def forward(self, h: torch.Tensor):
        onset = self.onset(self.onset_lstm(h)[0])
        offset = self.offset(h)
        combined = torch.cat([torch.sigmoid(self.frame(h)), torch.sigmoid(onset).detach(),
                              torch.sigmoid(offset).detach()], dim=-1)
        note = self.note(self.combined_lstm(combined)[0])
        return note.transpose(1, 2), onset.transpose(1, 2), offset.transpose(1, 2)


class OnsetsAndFrames(nn.Module):
    """An acoustic stack (``conv`` or ``harmonic_attention``) and the onset-conditioned heads."""

    def __init__(self, n_bins: int, bins_per_semitone: int = 3, fmin_midi: int = MIDI_MIN,
                 acoustic: str = "conv", channels: int = 8, hidden: int = 96, n_classes: int = 1):
        super().__init__()
        b = int(bins_per_semitone)
        n_semitones, rest = divmod(n_bins, b)
        if b < 1 or rest or fmin_midi != MIDI_MIN or n_semitones != MIDI_MAX - MIDI_MIN + 1:
            raise LowrankAmtError(f"this network needs a CQT of the 88 piano keys (MIDI {MIDI_MIN}..{MIDI_MAX}) "
                                  f"with a whole number of bins per semitone; got {n_bins} bins at {b} per "
                                  f"semitone from MIDI {fmin_midi}")
        self.config = {"architecture": "onsets_frames" if acoustic == "conv" else "harmonic_attention",
                       "n_bins": n_bins, "bins_per_semitone": b, "fmin_midi": int(fmin_midi),
                       "channels": int(channels), "hidden": int(hidden),
                       **({"n_classes": int(n_classes)} if n_classes > 1 else {})}
        self.acoustic = (ConvStack(n_bins, channels, hidden) if acoustic == "conv"
                         else HarmonicAttentionStack(n_bins, b, channels, hidden))
        self.heads = OnsetFrameHeads(hidden, n_classes)
        self.time_radius = CONTEXT_FRAMES

    def forward(self, features: torch.Tensor):
        """CQT magnitudes (batch, bins, frames) -> (note, onset, offset) logits."""
        x = torch.log(features.clamp_min(0) + LOG_FLOOR).unsqueeze(1)
        return self.heads(self.acoustic(x))
