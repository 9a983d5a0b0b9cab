"""Deep-unfolded multiplicative updates (Le Roux, Hershey & Weninger, "Deep NMF for speech
separation", ICASSP 2015; the unrolled-MU line of Cohen and Kervazo): the activations of a
track are L MU steps with the dictionary W fixed, and each step (layer) has parameters
learned end to end.

Layer l updates the activations H (templates x frames) as

    H <- max(eps, H * (s_l * numerator / denominator) ** (gamma * e_l))

where (numerator, denominator) are the plain MU terms of the family's numerics
(``activation_terms`` of ``nmf.py`` or ``nmfd.py``), gamma the MU exponent of the
beta-divergence, s_l = exp(log_scale[l]) a scale per layer and template and
e_l = exp(log_exponent[l]) a step exponent per layer. With ``learn_bin_gains``, layer l
also sees V and W through a per-bin gain g_l = exp(log_bin_gain[l]) (an equalizer over the
frequency bins): its MU terms are those of (g_l V, g_l W), i.e. MU for the divergence
weighted per bin by g_l ** beta (the beta-divergence is homogeneous of degree beta), so
g_l says which bins layer l trusts. With every parameter at zero, the
start (the family's ``init_activations``) and the L layers are L plain MU iterations: the
same formula in another order of operations, so equal to a few float32 units in the last
place (how many depends on the CPU's vector kernels). W stays the readable templates: frozen, or fine-tuned (``learn_dictionary``:
kept nonnegative and of unit sum per template as W = exp(log_W) / its sum). With
``untie_layers`` each layer has a dictionary W_l of its own (deep NMF's untied layers, Le
Roux et al. 2015): W_l = W * exp(c_l) rescaled so that each template keeps its sum, with a
learned log-change c_l of zero at the start (so W_l is W to the last bit there), each
template still its key's; the start takes W_1, and the reconstruction and the transcribed
activations pair with the last layer's, which is the model's W. With ``adapt_recording``
the layers also adapt to the recording they transcribe: a gain per bin c, one per
recording (batch item), models it as V ~ c * (W * H); each layer sees V / c and then takes
an MU step on c (``recording_gain``: smoothed over ``adapt_smoothing`` bins, an equaliser)
to the power of its learned step a_l, zero at the start (c stays 1: the model without it).

Two heads read the final activations on a log scale, per key (templates summed onto
their keys): the *note* logit a_k * log(H_k + floor) + b_k and the *onset* logit
c_k * relu(log(H_k[n] + floor) - log(H_k[n-1] + floor)) + d_k * log(H_k + floor) + o_k;
``floor`` is the mean of the training features (fixed at the start, saved with the
model). The heads carry the training signal (the frame and onset targets); a track is
transcribed from its key activations, as with every low-rank model (``families/unrolled.py``
says why), and the onset head's posteriorgram.

Conventions: features are nonnegative (batch, bins, frames); ``forward`` gives logits
(batch, 88, frames) like ``deep/harmonic_net.py``'s networks, so the same loss, batches and
epoch loop train both.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..constants import N_KEYS
from .core import EPS, beta_divergence, mu_exponent, ratio_terms

#: Floor of an MU ratio before its power (under float32's smallest normal number * 1e8).
TINY = 1e-30

#: Initial probability of both heads at an average activation (keys are mostly silent).
PRIOR_PROBABILITY = 0.02


def recording_gain(numerics, V, W, H, beta: float, gain, step, smoothing: int) -> torch.Tensor:
    """One adaptation step of the recording's gain per bin c (batch, bins, 1) in the model
    V ~ c * (W * H): the MU step of the beta-divergence on c, its log smoothed over
    ``smoothing`` bins (a moving average: an equaliser, not a per-bin fit of the noise),
    taken to the power ``step`` (0: no change, exactly)."""
    Lam = numerics.reconstruct(W, {"H": H}).clamp_min(EPS)
    num_term, den_term = ratio_terms(V, gain * Lam, beta)
    numerator = (num_term * Lam).sum(dim=-1, keepdim=True)
    denominator = (Lam if den_term is None else den_term * Lam).sum(dim=-1, keepdim=True)
    log_ratio = torch.log(numerator.clamp_min(TINY) / denominator.clamp_min(TINY))
    kernel = torch.full((1, 1, smoothing), 1.0 / smoothing, dtype=V.dtype, device=V.device)
    pad = smoothing // 2
    smoothed = torch.nn.functional.conv1d(
        torch.nn.functional.pad(log_ratio.transpose(-1, -2), (pad, smoothing - 1 - pad), mode="replicate"), kernel)
    return gain * torch.exp(mu_exponent(beta) * step * smoothed.transpose(-1, -2))


def unrolled_activations(numerics, V, W, beta: float, log_scale, log_exponent, start=None,
                         log_bin_gain=None, adapt_step=None, adapt_smoothing: int = 36,
                         with_gain: bool = False, mean=None):
    """The activations H after len(log_scale) unrolled layers (see the module docstring);
    ``W`` one dictionary for every layer, or a sequence of one per layer (untied);
    ``start`` defaults to the family's ``init_activations`` (with the first layer's W);
    ``log_bin_gain`` (layers x bins), the bin gains, none by default; ``adapt_step``
    (layers,), each layer's step of the recording's gain (``recording_gain``), none by
    default. ``with_gain``: return (H, the recording's gain per bin, or None). ``mean``:
    the mean of V the start assumes (default V's own)."""
    layer_W = W if isinstance(W, (list, tuple)) else [W] * len(log_scale)
    activations = start if start is not None else numerics.init_activations(V, layer_W[0] if layer_W else W,
                                                                            mean=mean)
    H, gamma = activations["H"], mu_exponent(beta)
    recording = None if adapt_step is None else torch.ones((*V.shape[:-1], 1), dtype=V.dtype, device=V.device)
    for layer, (scale, exponent) in enumerate(zip(log_scale, log_exponent)):
        V_seen, W_seen = (V if recording is None else V / recording), layer_W[layer]
        if log_bin_gain is not None:  # (bins, 1) broadcasts over V's frames and W's templates
            gain = log_bin_gain[layer].exp()[:, None]
            V_seen, W_seen = V_seen * gain, W_seen * gain
        numerator, denominator = numerics.activation_terms(V_seen, W_seen, {"H": H}, beta)
        # a ratio of 0 (a silent frame) is floored far below anything MU keeps, so that
        # its power has a finite gradient and the step still gives plain MU's eps
        ratio = (numerator / denominator.clamp_min(EPS) * scale.exp()[:, None]).clamp_min(TINY)
        H = (H * ratio ** (gamma * exponent.exp())).clamp_min(EPS)
        if recording is not None:
            recording = recording_gain(numerics, V, layer_W[layer], H, beta, recording, adapt_step[layer],
                                       adapt_smoothing)
    return (H, recording) if with_gain else H


def unit_sum(W: torch.Tensor) -> torch.Tensor:
    """W with each template (last axis) scaled to unit sum over its other axes."""
    return W / W.reshape(-1, W.shape[-1]).sum(dim=0)


class UnrolledMU(nn.Module):
    """W (frozen or learned) and L unrolled MU layers with note and onset heads."""

    def __init__(self, numerics, W: torch.Tensor, template_keys, beta: float, layers: int, floor: float,
                 learn_dictionary: bool = False, learn_bin_gains: bool = False, untie_layers: bool = False,
                 adapt_recording: bool = False, adapt_smoothing: int = 36):
        super().__init__()
        self.numerics, self.beta, self.floor = numerics, float(beta), float(floor)
        K = W.shape[-1]
        self.config = {"layers": int(layers), "beta": float(beta), "floor": float(floor),
                       "learn_dictionary": bool(learn_dictionary), "learn_bin_gains": bool(learn_bin_gains),
                       "untie_layers": bool(untie_layers), "adapt_recording": bool(adapt_recording),
                       "adapt_smoothing": int(adapt_smoothing), "n_templates": int(K)}
        self.register_buffer("template_keys", torch.as_tensor(template_keys, dtype=torch.long))
        if learn_dictionary:
            self.log_W = nn.Parameter(torch.log(W.clamp_min(EPS)))
        else:
            self.register_buffer("W_fixed", W.clone())
        if untie_layers:
            self.log_W_change = nn.Parameter(torch.zeros(layers, *W.shape))
        self.log_scale = nn.Parameter(torch.zeros(layers, K))
        self.log_exponent = nn.Parameter(torch.zeros(layers))
        self.log_bin_gain = nn.Parameter(torch.zeros(layers, W.shape[-2])) if learn_bin_gains else None
        self.adapt_step = nn.Parameter(torch.zeros(layers)) if adapt_recording else None
        prior = math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY))
        self.note_gain = nn.Parameter(torch.ones(N_KEYS))
        self.note_bias = nn.Parameter(torch.full((N_KEYS,), prior))
        self.onset_rise = nn.Parameter(torch.ones(N_KEYS))
        self.onset_level = nn.Parameter(torch.zeros(N_KEYS))
        self.onset_bias = nn.Parameter(torch.full((N_KEYS,), prior))
        #: frames of context an output frame depends on (the convolutive templates' extent)
        self.time_radius = int(W.shape[0]) if W.ndim == 3 else 1

    @property
    def W(self) -> torch.Tensor:
        """The dictionary the transcribed activations are of, each template of unit sum:
        the last layer's when the layers are untied."""
        if self.config.get("untie_layers"):
            return self.layer_dictionaries()[-1]
        if not self.config["learn_dictionary"]:
            return self.W_fixed
        return unit_sum(self.log_W.exp())

    def layer_dictionaries(self) -> list[torch.Tensor]:
        """Each layer's dictionary (untied layers), else W for every layer."""
        if not self.config.get("untie_layers"):
            return [self.W] * self.config["layers"]
        W, flat = self.W_fixed, self.W_fixed.reshape(-1, self.W_fixed.shape[-1])
        changed = [W * change.exp() for change in self.log_W_change]
        # each template keeps its sum: at a change of zero the ratio is exactly 1
        return [Wc / (Wc.reshape(flat.shape).sum(dim=0) / flat.sum(dim=0)) for Wc in changed]

    def activations(self, V: torch.Tensor, with_gain: bool = False, mean=None):
        """Template activations (batch, K, frames) of features V (batch, bins, frames);
        ``with_gain``: and the recording's gain per bin (batch, bins, 1; None without
        ``adapt_recording``); ``mean``: the mean of V its start assumes (default V's own)."""
        W = self.layer_dictionaries() if self.config.get("untie_layers") else self.W
        return unrolled_activations(self.numerics, V, W, self.beta, self.log_scale, self.log_exponent,
                                    log_bin_gain=self.log_bin_gain, adapt_step=self.adapt_step,
                                    adapt_smoothing=self.config.get("adapt_smoothing", 36), with_gain=with_gain,
                                    mean=mean)

    def key_activations(self, H: torch.Tensor) -> torch.Tensor:
        """(batch, K, frames) -> (batch, 88, frames): each key's templates summed."""
        out = H.new_zeros((H.shape[0], N_KEYS, H.shape[-1]))
        used = self.template_keys >= 0
        return out.index_add(1, self.template_keys[used], H[:, used])

    def heads(self, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(note logits, onset logits) of template activations H."""
        return self.heads_of_keys(self.key_activations(H))

    def heads_of_keys(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(note logits, onset logits) of key activations (batch, 88, frames)."""
        level = torch.log(keys + self.floor)
        rise = torch.relu(level - nn.functional.pad(level[..., :-1], (1, 0), value=math.log(self.floor)))
        note = self.note_gain[:, None] * level + self.note_bias[:, None]
        onset = self.onset_rise[:, None] * rise + self.onset_level[:, None] * level + self.onset_bias[:, None]
        return note, onset

    def forward(self, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        note, onset, _ = self.outputs(V)
        return note, onset

    def class_key_activations(self, H: torch.Tensor, class_rows: torch.Tensor, n_classes: int) -> torch.Tensor:
        """(batch, K, frames) -> (batch, n_classes * 88, frames), class-major: each class's
        templates summed per key (``class_rows``: each template's class row, -1: none)."""
        out = H.new_zeros((H.shape[0], n_classes * N_KEYS, H.shape[-1]))
        used = (self.template_keys >= 0) & (class_rows >= 0)
        return out.index_add(1, class_rows[used] * N_KEYS + self.template_keys[used], H[:, used])

    def class_loss(self, H: torch.Tensor, by_class: torch.Tensor, class_rows: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of each class's key activations, through the note head,
        against the class rolls ``by_class`` (batch, classes * 88, frames, class-major)."""
        keys = self.class_key_activations(H, class_rows, by_class.shape[1] // N_KEYS)
        logits = self.heads_of_keys(keys.reshape(-1, N_KEYS, keys.shape[-1]))[0].reshape(keys.shape)
        return nn.functional.binary_cross_entropy_with_logits(logits, by_class.to(torch.float32))

    def template_outputs(self, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(template activations H, reconstruction loss): the loss is the beta-divergence
        of V from W H per entry over V's mean to the power beta (the divergence's degree
        of homogeneity), so that it does not depend on the level."""
        H, gain = self.activations(V, with_gain=True)
        V_hat = self.numerics.reconstruct(self.W, {"H": H})
        V_hat = V_hat if gain is None else V_hat * gain
        level = V.mean().clamp_min(EPS) ** self.beta
        return H, beta_divergence(V, V_hat, self.beta) / (V.numel() * level)

    def outputs(self, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(note logits, onset logits, reconstruction loss) (``template_outputs``)."""
        H, reconstruction = self.template_outputs(V)
        note, onset = self.heads(H)
        return note, onset, reconstruction
