"""How interpretable a low-rank model's dictionary is: can each template be read as one
note, and do the templates together spell the notes that are played?

Definitions (W: bins x K nonnegative templates on log-frequency bins):

* **pitch** of template k: harmonic-comb estimate (``pitch.estimate_template_pitches``),
  NaN when no comb matches well (salience < 0.5); *valid* when not NaN.
* **valid share**: fraction of templates with a valid pitch.
* **harmonicity** h_k: share of template k's energy (squared magnitude) within half a
  semitone (at least one bin) of harmonics 1..12 of its pitch; 0 without a valid pitch.
* **label agreement** a_k (models whose templates have labels: supervised, or
  semi-supervised, template k labelled key 21 + k): 1 when the estimated pitch rounds
  to the label, else 0; NaN for a model without labels.
* **coverage**: fraction of the distinct pitches played in the test split that the
  rounded pitch of at least one valid template equals.
* **Hoyer sparsity** of template k: (sqrt(n) - |w|_1 / |w|_2) / (sqrt(n) - 1), in [0, 1]
  (1: a single bin; 0: flat), averaged over templates.
* **score** = coverage x mean_k q_k, where q_k = valid_k x h_k x a_k (a_k taken as 1
  for unlabelled templates). In [0, 1]: 1 for a dictionary of pure harmonic templates
  with the right pitches spanning every played pitch; 0 for noise. Sparsity is reported
  but left out of the score: a harmonic template with many partials is less sparse
  than a single peak yet as readable, and harmonicity already rewards energy that sits
  on harmonics.

Deep models have no dictionary: every column is NaN for them, never a made-up score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import MIDI_MIN, N_KEYS
from .errors import LowrankAmtError
from .features import bin_frequencies, read_index
from .io import atomic_path, read_json, write_json
from .notes import read_midi_notes
from .pitch import estimate_template_pitches, harmonic_energy_share

#: Dictionary-level columns of the results table, NaN for models without a dictionary.
SUMMARY_NAMES = ("interpretability", "valid_pitch_share", "harmonicity", "label_agreement",
                 "coverage", "hoyer_sparsity", "n_templates")

#: Supervision values whose first 88 templates are labelled keys 21..108.
LABELLED_SUPERVISION = ("supervised", "semi-supervised", "semi_supervised", "semisupervised")


def hoyer_sparsity(W) -> np.ndarray:
    """Hoyer's sparsity of each column of ``W`` (n x K), in [0, 1]; 0 for an empty column."""
    W = np.abs(np.asarray(W, dtype=float))
    n = W.shape[0]
    if n < 2:
        raise ValueError("Hoyer sparsity needs at least two bins")
    l1, l2 = W.sum(axis=0), np.linalg.norm(W, axis=0)
    ratio = np.divide(l1, l2, out=np.full(W.shape[1], np.sqrt(n)), where=l2 > 0)
    return (np.sqrt(n) - ratio) / (np.sqrt(n) - 1)


def template_table(W, bin_frequencies, labels=None) -> pd.DataFrame:
    """One row per template: ``template``, ``pitch`` (fractional MIDI, NaN if none),
    ``salience``, ``valid``, ``harmonicity``, ``label`` (MIDI or NaN),
    ``label_agreement`` (NaN where unlabelled) and ``hoyer_sparsity``."""
    W = np.asarray(W, dtype=float)
    pitches, salience = estimate_template_pitches(W, bin_frequencies, return_salience=True)
    K = W.shape[1]
    labels = np.full(K, np.nan) if labels is None else np.asarray(labels, dtype=float)
    if labels.shape != (K,):
        raise ValueError(f"labels has shape {labels.shape}, expected ({K},)")
    valid = np.isfinite(pitches)
    agreement = np.where(np.isfinite(labels),
                         (valid & (np.round(np.nan_to_num(pitches)) == labels)).astype(float), np.nan)
    return pd.DataFrame({
        "template": np.arange(K), "pitch": pitches, "salience": salience, "valid": valid,
        "harmonicity": harmonic_energy_share(W, bin_frequencies, pitches),
        "label": labels, "label_agreement": agreement, "hoyer_sparsity": hoyer_sparsity(W)})


def dictionary_scores(templates: pd.DataFrame, played_pitches) -> dict:
    """Dictionary-level measures (``SUMMARY_NAMES``) from ``template_table`` rows and the
    MIDI pitches played in the test split."""
    played = {int(p) for p in played_pitches}
    estimated = {int(round(p)) for p in templates.loc[templates["valid"], "pitch"]}
    coverage = len(played & estimated) / len(played) if played else np.nan
    labelled = templates["label"].notna()
    agreement = templates["label_agreement"].where(labelled, 1.0)
    quality = templates["valid"].astype(float) * templates["harmonicity"] * agreement
    return {
        "interpretability": float(coverage * quality.mean()) if played else float(quality.mean()),
        "valid_pitch_share": float(templates["valid"].mean()),
        "harmonicity": float(templates["harmonicity"].mean()),
        "label_agreement": float(templates.loc[labelled, "label_agreement"].mean()) if labelled.any() else np.nan,
        "coverage": float(coverage),
        "hoyer_sparsity": float(templates["hoyer_sparsity"].mean()),
        "n_templates": int(len(templates)),
    }


def load_dictionary(model_path, n_bins: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Templates (bins x K) and labels (K,) of a ``model.npz``.

    ``W`` may be bins x K, or T x bins x K (convolutive NMF: summed over time shifts).
    Labels come from a ``pitches`` or ``labels`` array (MIDI, NaN = unlabelled), else
    from the stored spec: a supervised or semi-supervised model's template k < 88 is
    key 21 + k; otherwise None.
    """
    model_path = Path(model_path)
    try:
        model = np.load(model_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LowrankAmtError(f"model {model_path} cannot be read ({exc})") from exc
    if "W" not in model:
        raise LowrankAmtError(f"model {model_path} has no dictionary 'W'")
    W = np.asarray(model["W"], dtype=float)
    if W.ndim == 3:
        W = W.sum(axis=0)
    if W.ndim != 2 or W.shape[0] != n_bins:
        raise LowrankAmtError(f"model {model_path}: W has shape {model['W'].shape}, expected "
                              f"({n_bins}, K) or (T, {n_bins}, K) for the feature set's {n_bins} bins")
    W = np.clip(W, 0.0, None)
    for key in ("pitches", "labels"):
        if key in model:
            return W, np.asarray(model[key], dtype=float).reshape(-1)
    spec = json.loads(str(model["spec"])) if "spec" in model else {}
    if spec.get("supervision") in LABELLED_SUPERVISION:
        labels = np.full(W.shape[1], np.nan)
        n = min(N_KEYS, W.shape[1])
        labels[:n] = MIDI_MIN + np.arange(n)
        return W, labels
    return W, None


def assess(model_path, index_path, out_path, templates_path, log=print) -> dict:
    """Score a model's dictionary: write the dictionary-level measures (JSON) and the
    per-template table (CSV). The bins come from ``params.json`` beside the index."""
    params_path = Path(index_path).parent / "params.json"
    if not params_path.exists():
        raise LowrankAmtError(f"{params_path} is missing; extract features first")
    freqs = bin_frequencies(read_json(params_path))
    W, labels = load_dictionary(model_path, len(freqs))
    templates = template_table(W, freqs, labels)
    played = np.concatenate([read_midi_notes(r.midi_path)[1] for r in read_index(index_path, "test").itertuples()]
                            or [np.zeros(0, dtype=int)])
    scores = dictionary_scores(templates, played)
    with atomic_path(templates_path) as tmp:
        templates.to_csv(tmp, index=False)
    write_json(out_path, {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in scores.items()})
    log(f"interpretability {scores['interpretability']:.3f} (valid {scores['valid_pitch_share']:.2f}, "
        f"harmonicity {scores['harmonicity']:.2f}, coverage {scores['coverage']:.2f})")
    return scores
