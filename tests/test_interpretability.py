"""The dictionary-interpretability score: ideal harmonic templates near 1, noise near 0,
wrong octaves penalised, NMFD dictionaries and label conventions read from model.npz."""

import json

import numpy as np
import pandas as pd
import pytest

from lowrank_amt import families
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.signal.spectrogram import bin_frequencies
from lowrank_amt.evaluation.interpretability import (dictionary_scores, hoyer_sparsity,
                                          load_dictionary, template_table)
from lowrank_amt.model_file import save_model
from lowrank_amt.evaluation.notes import write_midi_notes
from lowrank_amt.stages import evaluate as evaluation

SPEC = {"bins_per_semitone": 3, "n_semitones": 88, "fmin_midi": 21}
FREQS = bin_frequencies(SPEC)
KEYS = np.arange(21, 109)
PLAYED = np.arange(36, 97)


def harmonic_template(pitch, n_harmonics=10):
    midi = 69 + 12 * np.log2(FREQS / 440.0)
    return sum(np.exp(-0.5 * ((midi - pitch - 12 * np.log2(h)) / 0.15) ** 2) / h
               for h in range(1, n_harmonics + 1))


def ideal_dictionary(shift=0):
    return np.stack([harmonic_template(p + shift) for p in KEYS], axis=1)


def test_ideal_harmonic_dictionary_scores_near_one():
    scores = dictionary_scores(template_table(ideal_dictionary(), FREQS, KEYS), PLAYED)
    assert scores["valid_pitch_share"] == 1.0
    assert scores["label_agreement"] == 1.0
    assert scores["coverage"] == 1.0
    assert scores["interpretability"] > 0.95


def test_white_noise_scores_near_zero():
    W = np.abs(np.random.default_rng(0).normal(size=(len(FREQS), 88)))
    scores = dictionary_scores(template_table(W, FREQS, KEYS), PLAYED)
    assert scores["valid_pitch_share"] == 0.0
    assert scores["interpretability"] < 0.05
    assert scores["coverage"] == 0.0


def test_a_template_of_the_wrong_octave_is_penalised():
    W = ideal_dictionary()
    W[:, 40] = harmonic_template(KEYS[40] + 12)  # labelled key 61, sounds key 73
    table = template_table(W, FREQS, KEYS)
    assert round(table.loc[40, "pitch"]) == 73 and table.loc[40, "label_agreement"] == 0
    wrong = dictionary_scores(table, PLAYED)["interpretability"]
    # that template's quality drops to 0, and key 61 is no longer covered
    others = table["harmonicity"].drop(index=40).sum() / 88
    assert wrong == pytest.approx(others * (len(PLAYED) - 1) / len(PLAYED))
    assert wrong < dictionary_scores(template_table(ideal_dictionary(), FREQS, KEYS), PLAYED)["interpretability"] - 0.02
    # a whole dictionary an octave off scores 0 with labels
    assert dictionary_scores(template_table(ideal_dictionary(12)[:, :76], FREQS, KEYS[:76]),
                             PLAYED)["interpretability"] == 0.0


def test_without_labels_coverage_counts_missing_pitches():
    W = np.stack([harmonic_template(p) for p in range(36, 66)], axis=1)  # half the played range
    scores = dictionary_scores(template_table(W, FREQS), PLAYED)
    assert np.isnan(scores["label_agreement"])
    assert scores["coverage"] == pytest.approx(30 / len(PLAYED))
    assert scores["interpretability"] == pytest.approx(scores["coverage"] * scores["harmonicity"])


def test_hoyer_sparsity_extremes():
    W = np.zeros((100, 3))
    W[5, 0] = 2.0
    W[:, 1] = 1.0
    np.testing.assert_allclose(hoyer_sparsity(W), [1.0, 0.0, 0.0], atol=1e-12)


def save(path, family, supervision, W, keys=None):
    """A model.npz as training writes it (``template_keys``: the key 0..87 of each template)."""
    spec = families.resolve({"family": family, "supervision": supervision})[1]
    keys = np.arange(W.shape[-1]) if keys is None else np.asarray(keys)
    save_model(path, family, spec, {"W": W, "template_keys": keys})
    return path


def test_load_dictionary_conventions(tmp_path):
    W = ideal_dictionary()
    _, labels = load_dictionary(save(tmp_path / "sup.npz", "nmf", "supervised", W), len(FREQS))
    assert labels.tolist() == KEYS.tolist()
    # semi-supervised training drops the templates of keys never played: labels follow the keys
    _, labels = load_dictionary(save(tmp_path / "semi.npz", "nmf", "semi_supervised", W[:, 5:], np.arange(5, 88)),
                                len(FREQS))
    assert labels.tolist() == KEYS[5:].tolist()
    assert load_dictionary(save(tmp_path / "unsup.npz", "nmf", "unsupervised", W[:, :20]), len(FREQS))[1] is None
    # NMFD: T x F x K, summed over the time shifts
    summed, labels = load_dictionary(save(tmp_path / "nmfd.npz", "nmfd", "supervised", np.stack([W, 2 * W, W])),
                                     len(FREQS))
    np.testing.assert_allclose(summed, 4 * W)
    assert labels.tolist() == KEYS.tolist()
    with pytest.raises(LowrankAmtError, match="bad.npz.*264"):
        load_dictionary(save(tmp_path / "bad.npz", "nmf", "supervised", W[:100]), len(FREQS))
    np.savez(tmp_path / "foreign.npz", W=W)
    with pytest.raises(LowrankAmtError, match="foreign.npz is not a lowrank-amt model"):
        load_dictionary(tmp_path / "foreign.npz", len(FREQS))
    save_model(tmp_path / "net.npz", "basic_pitch", families.resolve({"family": "basic_pitch"})[1], {})
    with pytest.raises(LowrankAmtError, match="net.npz .family 'basic_pitch'. has no dictionary"):
        load_dictionary(tmp_path / "net.npz", len(FREQS))


def test_assess_writes_scores_and_templates(tmp_path):
    save(tmp_path / "model.npz", "nmf", "supervised", ideal_dictionary())
    (tmp_path / "params.json").write_text(json.dumps({"sample_rate": 22050, **SPEC}))
    write_midi_notes(tmp_path / "t.mid", [[0, 1], [1, 2]], [60, 64])
    pd.DataFrame([{"track_id": "t", "split": "test", "features_path": "x", "roll_path": "y",
                   "midi_path": str(tmp_path / "t.mid")}]).to_csv(tmp_path / "index.csv", index=False)
    scores = evaluation.assess(tmp_path / "model.npz", tmp_path / "index.csv", tmp_path / "i.json",
                    tmp_path / "templates.csv", log=lambda m: None)
    assert scores["coverage"] == 1.0 and scores["interpretability"] > 0.95
    assert json.loads((tmp_path / "i.json").read_text())["n_templates"] == 88
    assert len(pd.read_csv(tmp_path / "templates.csv")) == 88
