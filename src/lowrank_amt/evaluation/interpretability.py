"""How interpretable a low-rank model's dictionary is: can each template be read as one
note, and do the templates together spell the notes that are played?

Definitions (W: bins x K nonnegative templates on log-frequency bins):

* **pitch** of template k: harmonic-comb estimate (``pitch.estimate_template_pitches``),
  NaN when no comb matches well (salience < 0.5); *valid* when not NaN.
* **valid share**: fraction of templates with a valid pitch.
* **harmonicity** h_k: share of template k's energy (squared magnitude) within half a
  semitone (at least one bin) of harmonics 1..12 of its pitch; 0 without a valid pitch.
* **label agreement** a_k (models whose templates have labels: supervised, or
  semi-supervised, each template labelled with the key it was learned for): 1 when the
  estimated pitch rounds to the label, else 0; NaN for a model without labels.
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

import numpy as np
import pandas as pd

from ..errors import LowrankAmtError
from ..model_file import load_model
from ..signal.pitch import estimate_template_pitches, harmonic_energy_share

#: Dictionary-level columns of the results table, NaN for models without a dictionary.
SUMMARY_NAMES = ("interpretability", "valid_pitch_share", "harmonicity", "label_agreement",
                 "coverage", "hoyer_sparsity", "n_templates", "layer_interpretability_min")


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


def load_layer_dictionaries(model_path) -> list[np.ndarray]:
    """Spectral templates (bins x K) of each layer of a ``model.npz`` whose layers have
    dictionaries of their own (untied unrolled layers); [] for any other model."""
    model = load_model(model_path)
    return [np.clip(W, 0.0, None) for W in model.family.layer_dictionaries(model.arrays, model.spec) or []]


def load_dictionary(model_path, n_bins: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Spectral templates (bins x K) and their labels (K,: MIDI, NaN = unlabelled; None
    when no template is labelled) of a ``model.npz``, as its family reads them
    (convolutive NMF: each template summed over its frames)."""
    model = load_model(model_path)
    dictionary = model.family.dictionary(model.arrays, model.spec)
    if dictionary is None:
        raise LowrankAmtError(f"model {model_path} (family '{model.family.name}') has no dictionary to assess")
    W, labels = dictionary
    if W.ndim != 2 or W.shape[0] != n_bins:
        raise LowrankAmtError(f"model {model_path}: its templates have shape {W.shape}, expected "
                              f"({n_bins}, K) for the feature set's {n_bins} bins")
    labels = np.asarray(labels, dtype=float)
    return np.clip(W, 0.0, None), (labels if np.isfinite(labels).any() else None)
