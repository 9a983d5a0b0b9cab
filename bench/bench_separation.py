"""Where separation from class templates loses (docs/multi.md): the multi study's test
pieces separated by a model's dictionary in variants of the masks and of the activations.

    .venv/bin/python bench/bench_separation.py results/bench/separation.md \\
        results/multi/models/synth_band/cqt/nmfd_inst_kl/isolated

after ``make multi`` (or the model's ``decoding.json`` target: its notes are read from
``results/multi/transcriptions/<same run>/midi``). Per variant, the mean SI-SDR (dB) over
the pitched stems of the 8 test pieces (``separation.stem_scores``):

- masks: the study's (each class's share of the reconstruction, carried onto the
  mixture's STFT), Wiener-like (shares of the squared parts), with the part the model
  does not explain as one more share, or applied to the harmonic part of the mixture
  (``librosa.decompose.hpss``), which holds the drums back;
- activations (100 MU steps from the model's start, the dictionary fixed; for the
  unrolled family the same MU on its templates, not its layers): free (the study's),
  or gated to frames within 2 frames of a note: of the true notes of the template's
  class and key (score-informed, the ceiling of gating), of the model's own decoded
  notes of its class and key, or of any class's notes on its key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import librosa
import numpy as np
import torch
from tables import write_table

from lowrank_amt.datasets.manifest import read_manifest, stem_paths
from lowrank_amt.evaluation import separation
from lowrank_amt.factorization.training import solve_activations
from lowrank_amt.instruments import CLASSES, class_roll
from lowrank_amt.recordings import resolve_model
from lowrank_amt.signal.audio import load_audio
from lowrank_amt.signal.feature_cache import cache_params, load_track, read_index
from lowrank_amt.signal.spectrogram import bin_frequencies

STUDY = Path("results/multi")
NEAR_FRAMES = 2


def gate(midi_path, n_frames, frame_rate, classes, keys, any_class=False) -> torch.Tensor:
    """Templates x frames: 1 within NEAR_FRAMES of a note of the template's class (or of any
    class) and key."""
    roll = class_roll(midi_path, list(CLASSES), n_frames, frame_rate).reshape(len(CLASSES), 88, n_frames)
    if any_class:
        roll = np.repeat(roll.max(axis=0, keepdims=True), len(CLASSES), axis=0)
    near = np.ones(2 * NEAR_FRAMES + 1)
    roll = np.apply_along_axis(lambda r: np.convolve(r, near, mode="same") > 0, 2, roll)
    return torch.from_numpy(roll[classes, keys].astype(np.float32))


def mask_variants(parts: dict, V: np.ndarray) -> dict[str, dict]:
    rest = np.maximum(V[:, :next(iter(parts.values())).shape[1]] - sum(parts.values()), 0)
    return {"shares": parts, "Wiener (squared shares)": {k: p ** 2 for k, p in parts.items()},
            "shares and the unexplained part": {**parts, "_rest": rest}}


def separate_track(row, manifest, model, own_midi: Path, rate, hop, bin_hz, scores: dict) -> None:
    family, arrays = model.family, model.arrays
    numerics = family.base(model.spec)[0].numerics if hasattr(family, "base") else family.numerics
    W = torch.from_numpy(np.asarray(arrays["W"], dtype=np.float32))
    classes, keys = np.asarray(arrays["template_classes"]), np.asarray(arrays["template_keys"])
    audio_path = manifest.loc[row.track_id, "audio_path"]
    mixture = load_audio(audio_path, rate)
    references = separation.read_stems(stem_paths(audio_path), rate, len(mixture), audio_path)
    pitched = {name: audio for name, audio in references.items() if name in CLASSES}
    V = np.array(load_track(row)[0], dtype=np.float32)  # writable, for torch
    n_frames, frame_rate = V.shape[1], rate / hop
    spectrum = librosa.stft(mixture, n_fft=4 * hop, hop_length=hop)
    harmonic = librosa.decompose.hpss(spectrum)[0]
    gates = {"free": None,
             "true notes of its class and key": gate(manifest.loc[row.track_id, "midi_path"], n_frames, frame_rate,
                                                     classes, keys),
             "own notes of its class and key": gate(own_midi / f"{row.track_id}.mid", n_frames, frame_rate, classes,
                                                    keys),
             "own notes of any class on its key": gate(own_midi / f"{row.track_id}.mid", n_frames, frame_rate,
                                                       classes, keys, any_class=True)}

    def score(label, parts, base):
        masks = separation.stft_masks(parts, bin_hz, rate, 4 * hop, spectrum.shape[1])
        stems = {c: librosa.istft(base * m, hop_length=hop, n_fft=4 * hop, length=len(mixture))
                 for c, m in masks.items() if not c.startswith("_")}
        scores.setdefault(label, []).extend(s["si_sdr"] for s in separation.stem_scores(pitched, stems).values())

    for gate_name, mask in gates.items():
        H = solve_activations(numerics, torch.from_numpy(V), W, beta=1.0, n_iter=100, mask=mask)["H"]
        parts = separation.class_parts(numerics, W, classes, H, n_frames)
        if gate_name == "free":
            for mask_name, variant in mask_variants(parts, V).items():
                score(("free", mask_name), variant, spectrum)
        score((gate_name, "shares, harmonic part"), parts, harmonic)
        if gate_name != "free":
            score((gate_name, "shares"), parts, spectrum)
    print(row.track_id, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="markdown table (a CSV beside it)")
    parser.add_argument("model", help="a multi study model folder with instrument templates")
    args = parser.parse_args()
    index_path = STUDY / "features/synth_band/cqt/index.csv"
    params = cache_params(index_path)
    rate, hop, bin_hz = int(params["sample_rate"]), int(params["hop_length"]), bin_frequencies(params)
    manifest = read_manifest(STUDY / "data/synth_band/manifest.csv", "test").set_index("track_id")
    model = resolve_model(args.model)
    own_midi = STUDY / "transcriptions" / Path(args.model).relative_to(STUDY / "models") / "midi"
    scores = {}
    for row in read_index(index_path, "test").itertuples():
        separate_track(row, manifest, model, own_midi, rate, hop, bin_hz, scores)
    write_table([{"activations": a, "masks": m, "si_sdr_db": round(float(np.mean(v)), 2), "stems": len(v)}
                 for (a, m), v in scores.items()], args.out)


if __name__ == "__main__":
    main()
