"""Full-batch training of every family, semi-supervised masking, the key mapping of
templates, and the train/activations stages for every family, supervision and form."""


import numpy as np
import pandas as pd
import pytest
import torch


from lowrank_amt.constants import N_KEYS
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.factorization import nmf, nmfd, ntd
from lowrank_amt.factorization.core import generator
from lowrank_amt.factorization.training import fit_full_batch
from lowrank_amt.factorization.activations import template_keys, to_keys
from lowrank_amt.runtime.io import read_json
from lowrank_amt.stages import train as training, transcribe as transcription

OPTIONS = {"time_extent": 3, "time_rank": 2, "segment_rank": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_data(family, rng):
    data = rng.gamma(1.0, 1.0, (6, 10, 8)) + 0.01  # segments x bins x frames
    if family is ntd:
        return torch.tensor(data)
    return torch.tensor(data.transpose(1, 0, 2).reshape(10, 48))  # bins x frames


@pytest.mark.parametrize("beta", [0, 1, 2])
@pytest.mark.parametrize("family", [nmf, nmfd, ntd], ids=["nmf", "nmfd", "ntd"])
def test_full_batch_mu_never_increases_the_divergence(family, beta):
    V = family_data(family, np.random.default_rng(0))
    W0 = family.init_dictionary(10, 4, float((V.mean() / 4).sqrt()), generator(0), V, **OPTIONS)
    _, _, losses = fit_full_batch(family, V, W0, beta=beta, n_iter=30, seed=1, options=OPTIONS)
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1])), np.diff(losses).max()
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("family", [nmf, nmfd], ids=["nmf", "nmfd"])
def test_masked_activations_stay_zero_outside_the_roll(family):
    rng = np.random.default_rng(1)
    V = torch.tensor(rng.random((10, 40)) + 0.1)
    mask = torch.tensor((rng.random((4, 40)) < 0.3).astype(float))
    W0 = family.init_dictionary(10, 4, 0.5, generator(0), V, **OPTIONS)
    W, activations, losses = fit_full_batch(family, V, W0, beta=1.0, n_iter=20, mask=mask, l1=0.1)
    H = family.key_activations(activations)
    assert torch.all(H[mask == 0] == 0)
    assert torch.all(H[mask == 1] > 0)
    assert losses[-1] < losses[0]


def test_template_keys_round_pitches_and_drop_the_rest():
    keys = template_keys([21.0, 60.4, 59.6, np.nan, 12.0, 108.2])
    assert keys.tolist() == [0, 39, 39, -1, -1, 87]
    H = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [9.0, 9.0], [9.0, 9.0], [0.0, 4.0]])
    out = to_keys(H, keys)
    assert out.shape == (N_KEYS, 2)
    assert out[39].tolist() == [5.0, 1.5] and out[0].tolist() == [1.0, 0.0] and out[87].tolist() == [0.0, 4.0]
    assert out.sum() == pytest.approx(1.0 + 5.0 + 1.5 + 4.0)


COMBINATIONS = [(family, supervision, form)
                for family in ("nmf", "nmfd", "ntd")
                for supervision in ("supervised", "semi_supervised", "unsupervised")
                for form in ("full_batch", "online_mu", "gradient")
                if not (supervision == "supervised" and form != "full_batch")]


@pytest.mark.parametrize("family,supervision,form", COMBINATIONS)
def test_stages_write_every_output(lowrank_cache, small_spec, tmp_path, family, supervision, form):
    folder, _ = lowrank_cache
    spec = {**small_spec, "family": family, "supervision": supervision, "form": form}
    out = tmp_path
    training.train(spec, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json",
                   log=lambda m: None, checkpoint_dir=out / "checkpoints")
    transcription.activations(out / "model.npz", folder / "index.csv", out / "activations.npz", out / "activations.json",
                              log=lambda m: None)
    info = read_json(out / "train.json")
    assert {"train_seconds", "train_cpu_seconds", "device", "n_parameters"} <= set(info)
    losses = pd.read_csv(out / "loss.csv")
    assert "loss" in losses and ({"epoch", "iteration"} & set(losses.columns))
    assert np.isfinite(losses["loss"]).all()
    arrays = np.load(out / "activations.npz")
    assert sorted(arrays.files) == ["test__test_0", "validation__validation_0"]
    H = arrays["test__test_0"]
    assert H.dtype == np.float16 and H.shape == (N_KEYS, 344) and np.isfinite(H).all()
    # an unsupervised model trained this briefly may have no pitched template: all silent
    assert H.max() > 0 or (np.load(out / "model.npz")["template_keys"] < 0).all()
    assert read_json(out / "activations.json")["seconds_per_audio_minute"] > 0


def test_semi_supervised_templates_are_the_played_keys(lowrank_cache, small_spec, tmp_path):
    """Templates learned on the training pieces with activations confined to their roll
    match the true template of every key played often enough."""
    folder, W_true = lowrank_cache
    spec = {**small_spec, "family": "nmf", "supervision": "semi_supervised", "train_iterations": 200}
    training.train(spec, folder / "index.csv", tmp_path / "model.npz", tmp_path / "loss.csv",
                   tmp_path / "train.json", log=lambda m: None)
    model = np.load(tmp_path / "model.npz")
    column = {key: i for i, key in enumerate(model["template_keys"])}
    roll = np.concatenate([np.load(folder / f"train_{i}.roll.npy") for i in range(3)], axis=1)
    # keys never played have no template left; those heard alone often are recovered
    assert set(column) == set(np.flatnonzero(roll.any(axis=1)))
    played = np.flatnonzero((roll.sum(axis=1) > 20) & ((roll.sum(axis=0)[None] == 1) & roll).any(axis=1))
    assert len(played) >= 5
    correlations = [np.corrcoef(model["W"][:, column[k]], W_true[:, k])[0, 1] for k in played]
    assert min(correlations) > 0.95


def test_unsupervised_templates_get_their_pitch(lowrank_cache, small_spec, tmp_path):
    folder, _ = lowrank_cache
    spec = {**small_spec, "family": "nmf", "supervision": "unsupervised", "rank": 30, "train_iterations": 150}
    training.train(spec, folder / "index.csv", tmp_path / "model.npz", tmp_path / "loss.csv",
                   tmp_path / "train.json", log=lambda m: None)
    model = np.load(tmp_path / "model.npz")
    roll = np.concatenate([np.load(folder / f"train_{i}.roll.npy") for i in range(3)], axis=1)
    keys = model["template_keys"]
    assert keys.shape == (30,) and (keys >= 0).sum() >= 15
    # a template's key is a key that sounds in the training pieces
    assert set(keys[keys >= 0]) <= set(np.flatnonzero(roll.any(axis=1)))


@pytest.mark.parametrize("bad,message", [({"family": "cp"}, "'family'"),
                                          ({"family": "nmf", "form": "online_mu"}, "'form'"),
                                          ({"family": "nmf", "ranks": 3}, "'ranks' is not a key"),
                                          ({"family": "nmf", "rank": 2.5}, "'rank': 2.5 is not of type 'integer'"),
                                          ({"family": "ntd", "attack_frames": 2}, "'attack_frames'")])
def test_bad_specs_name_the_key(lowrank_cache, small_spec, tmp_path, bad, message):
    folder, _ = lowrank_cache
    with pytest.raises(LowrankAmtError, match=message):
        training.train({**small_spec, **bad}, folder / "index.csv", tmp_path / "m.npz", tmp_path / "l.csv",
                       tmp_path / "t.json", log=lambda m: None)
