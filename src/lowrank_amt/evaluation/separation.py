"""Separation of a mixture into one stem per instrument class by a class-labelled
dictionary, and the stems' scores against the rendered ones.

Conventions. A class's mask is its share of the model's reconstruction in the feature
domain (magnitudes): Λ_c / Σ Λ, Λ_c built from the class's templates and activations
(the soft masks of NMF separation, Févotte, Bertin & Durrieu 2009). Masks are carried
from the feature bins onto the bins of an STFT of ``4 * hop`` samples with the features'
hop by linear interpolation over log frequency (the lowest and highest feature bins
cover the bins beyond them), applied to the mixture's STFT and inverted to the
mixture's length. Two oracles bound what the models can reach: ``oracle_stems`` applies
the ideal ratio mask |S_c| / Σ |S| of the true stems' STFTs (the ceiling of any ratio
mask at this STFT); ``oracle_template_stems`` separates with templates fitted to each
true stem itself (KL-NMF of rank ``ORACLE_RANK`` per stem), activations then found on the
mixture as a model's are (the ceiling of a dictionary that knew the test instruments).

Scores, per stem, in dB: SI-SDR (Le Roux et al., ICASSP 2019) and SDR (BSS Eval's, with
distortion filters of 512 taps), from ``fast_bss_eval`` (Scheibler, ICASSP 2022); and SI-SDR
over the windows where the stem sounds (within ``SOUNDING_DB`` of its loudest).
"""

from __future__ import annotations

import fast_bss_eval
import librosa
import numpy as np
import soundfile
import torch

from ..errors import LowrankAmtError
from ..factorization.activations import template_activations
from ..instruments import CLASSES
from ..signal.audio import load_audio

EPS = 1e-9
#: A stem sounds in the windows (of SOUNDING_WINDOW samples) within SOUNDING_DB of its loudest.
SOUNDING_WINDOW, SOUNDING_DB = 2048, 30.0
#: Templates per stem of the oracle dictionary, and its MU iterations.
ORACLE_RANK, ORACLE_ITERATIONS = 16, 100


def class_parts(numerics, W: torch.Tensor, classes: np.ndarray, H: torch.Tensor, n_frames: int) -> dict:
    """class -> its part of W H (bins x frames): the class's templates (the last axis of
    W, ``classes`` giving each one's) with their activations (H: templates x frames)."""
    parts = {}
    with torch.no_grad():
        for c in np.unique(classes):
            own = torch.from_numpy(np.asarray(classes) == c).to(H.device)
            parts[CLASSES[c]] = numerics.reconstruct(W[..., own], {"H": H[own]}).cpu().numpy()[:, :n_frames]
    return parts


def class_reconstructions(family, arrays: dict, spec: dict, features: np.ndarray, device) -> dict[str, np.ndarray]:
    """class -> its part of a low-rank model's reconstruction of a track's features
    (activations by MU with the dictionary fixed, as its transcription finds them)."""
    W = np.asarray(arrays["W"])
    activations = template_activations(family, features, W, spec, device)
    return class_parts(family.numerics, torch.from_numpy(W).to(device), np.asarray(arrays["template_classes"]),
                       activations["H"], features.shape[1])


def stft_masks(parts: dict[str, np.ndarray], bin_hz: np.ndarray, sample_rate: int, n_fft: int,
               n_frames: int) -> dict[str, np.ndarray]:
    """Each class's ratio mask on the STFT grid (n_fft // 2 + 1 bins x ``n_frames``)."""
    total = sum(parts.values()) + EPS
    stft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    position = np.interp(np.log2(np.maximum(stft_hz, 1.0)), np.log2(bin_hz), np.arange(len(bin_hz)))
    low = np.floor(position).astype(int)
    high, weight = np.minimum(low + 1, len(bin_hz) - 1), (position - low)[:, None]
    masks = {}
    for name, part in parts.items():
        mask = part / total
        mask = mask[:, np.minimum(np.arange(n_frames), mask.shape[1] - 1)]  # the features' frames onto the STFT's
        masks[name] = (1 - weight) * mask[low] + weight * mask[high]
    return masks


def apply_masks(mixture: np.ndarray, masks_of, hop: int) -> dict[str, np.ndarray]:
    """Stems from the mixture's STFT times each mask; ``masks_of(n_fft, n_frames)`` gives them."""
    n_fft = 4 * hop
    spectrum = librosa.stft(mixture, n_fft=n_fft, hop_length=hop)
    masks = masks_of(n_fft, spectrum.shape[1])
    return {name: librosa.istft(spectrum * mask, hop_length=hop, n_fft=n_fft, length=len(mixture))
            for name, mask in masks.items()}


def separate(parts: dict, mixture: np.ndarray, sample_rate: int, hop: int, bin_hz: np.ndarray) -> dict:
    """class -> its stem (mono audio, the mixture's length), from each class's part of
    the reconstruction of the mixture's features (``class_parts``)."""
    return apply_masks(mixture, lambda n_fft, n_frames: stft_masks(parts, bin_hz, sample_rate, n_fft, n_frames), hop)


def oracle_stems(references: dict[str, np.ndarray], mixture: np.ndarray, hop: int) -> dict[str, np.ndarray]:
    """Stems by the ideal ratio mask of the true stems."""
    n_fft = 4 * hop
    magnitudes = {name: np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop)) for name, audio in references.items()}
    total = sum(magnitudes.values()) + EPS
    return apply_masks(mixture, lambda n_fft, n_frames: {k: (m / total)[:, :n_frames] for k, m in magnitudes.items()},
                       hop)


def oracle_template_stems(references: dict[str, np.ndarray], mixture: np.ndarray, features_of, sample_rate: int,
                          hop: int, bin_hz: np.ndarray) -> dict[str, np.ndarray]:
    """Stems by templates fitted to the true stems (``features_of``: audio -> features)."""
    from ..factorization import nmf
    from ..factorization.training import solve_activations
    templates, classes = [], []
    for name, audio in references.items():
        W, _, _ = nmf.nmf(torch.from_numpy(features_of(audio).astype(np.float32)), ORACLE_RANK, 1.0, ORACLE_ITERATIONS)
        templates.append(W)
        classes += [CLASSES.index(name)] * ORACLE_RANK
    W, V = torch.cat(templates, dim=1), torch.from_numpy(features_of(mixture).astype(np.float32))
    H = solve_activations(nmf, V, W, beta=1.0, n_iter=ORACLE_ITERATIONS)["H"]
    return separate(class_parts(nmf, W, np.array(classes), H, V.shape[1]), mixture, sample_rate, hop, bin_hz)


def read_stems(paths: dict, sample_rate: int, length: int, mixture_path=None) -> dict[str, np.ndarray]:
    """The rendered stems of a mixture of ``length`` samples (at ``sample_rate``); a stem
    recorded at another rate than the mixture (``mixture_path``), or of another length,
    is an error naming it."""
    stems = {}
    native = None if mixture_path is None else soundfile.info(str(mixture_path)).samplerate
    for name, path in paths.items():
        rate = soundfile.info(str(path)).samplerate
        if native is not None and rate != native:
            raise LowrankAmtError(f"stem {path} is at {rate} Hz, its mixture {mixture_path} at {native} Hz: "
                                  "a mixture's stems must have its rate and length")
        audio = load_audio(path, sample_rate)
        if abs(len(audio) - length) > 1:
            raise LowrankAmtError(f"stem {path} has {len(audio)} samples at {sample_rate} Hz, its mixture {length}: "
                                  "a mixture's stems must have its rate and length")
        stems[name] = np.pad(audio, (0, max(0, length - len(audio))))[:length]
    return stems


def sounding(reference: np.ndarray, window: int = SOUNDING_WINDOW) -> np.ndarray:
    """Boolean per sample: inside a window of ``window`` samples whose energy is within
    ``SOUNDING_DB`` of the stem's loudest window (where the stem sounds)."""
    n_windows = -(-len(reference) // window)
    padded = np.pad(reference, (0, n_windows * window - len(reference)))
    energy = (padded.reshape(n_windows, window) ** 2).sum(axis=1)
    loud = energy >= energy.max() * 10 ** (-SOUNDING_DB / 10)
    return np.repeat(loud, window)[:len(reference)]


def stem_scores(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray]) -> dict[str, dict]:
    """class -> {"si_sdr", "sdr", "si_sdr_sounding"} (dB) of each reference stem that
    sounds, the last over the samples where it sounds (``sounding``): a sparse stem's
    silences then weigh nothing. A class the model lacks is estimated as silence (scores
    are clamped at -100 dB)."""
    names = sorted(n for n, audio in references.items() if np.abs(audio).max() > 1e-4)
    if not names:
        return {}
    ref = np.stack([references[n] for n in names])
    est = np.stack([estimates.get(n, np.zeros_like(references[n])) for n in names]) + 1e-7
    si_sdr = fast_bss_eval.si_sdr(ref, est, clamp_db=100)
    sdr = fast_bss_eval.sdr(ref, est, clamp_db=100)
    where = [sounding(r) for r in ref]
    si_sdr_sounding = [float(fast_bss_eval.si_sdr(r[None, w], e[None, w], clamp_db=100)[0])
                       for r, e, w in zip(ref, est, where)]
    return {n: {"si_sdr": float(a), "sdr": float(b), "si_sdr_sounding": c}
            for n, a, b, c in zip(names, si_sdr, sdr, si_sdr_sounding)}


def separation_scores(separator, tracks, sample_rate: int, hop: int, features_of, bin_hz, log=print) -> dict:
    """Mean SI-SDR and SDR over the stems of ``tracks`` (rows with ``features``,
    ``audio_path`` and ``stems``: class -> stem file) of the model's ``separator`` and of
    the two oracles, and the model's mean SI-SDR per class. Stems of classes no model
    transcribes (drums) are mixed in but not scored (the oracle templates do not model
    them either)."""
    model, oracle, oracle_templates = [], [], []
    for row in tracks:
        mixture = load_audio(row["audio_path"], sample_rate)
        references = read_stems(row["stems"], sample_rate, len(mixture), row["audio_path"])
        pitched = {name: audio for name, audio in references.items() if name in CLASSES}
        for rows, estimates in ((model, separator(row["features"], mixture)), (oracle, oracle_stems(references, mixture, hop)),
                                (oracle_templates, oracle_template_stems(pitched, mixture, features_of, sample_rate,
                                                                         hop, bin_hz))):
            rows += [{"track_id": row["track_id"], "class": name, **s}
                     for name, s in stem_scores(pitched, estimates).items()]
        log(f"separation: {row['track_id']}: SI-SDR " + ", ".join(f"{r['class']} {r['si_sdr']:.1f}"
                                                             for r in model if r["track_id"] == row["track_id"]))
    if not model:
        return {}
    per_class = {}
    for r in model:
        per_class.setdefault(r["class"], []).append(r["si_sdr"])
    return {"si_sdr": float(np.mean([r["si_sdr"] for r in model])), "sdr": float(np.mean([r["sdr"] for r in model])),
            "si_sdr_sounding": float(np.mean([r["si_sdr_sounding"] for r in model])),
            "oracle_si_sdr": float(np.mean([r["si_sdr"] for r in oracle])),
            "oracle_sdr": float(np.mean([r["sdr"] for r in oracle])),
            "oracle_templates_si_sdr": float(np.mean([r["si_sdr"] for r in oracle_templates])), "n_stems": len(model),
            "si_sdr_per_class": {k: float(np.mean(v)) for k, v in per_class.items()}}
