"""Deep-unfolded MU (family ``unrolled``): with nothing learned its layers are plain MU
iterations, to a few float32 units in the last place; training lowers the validation loss
with the isolated-note dictionary kept; resume is exact; steering and adaptation keep the
learned layers; a loss on the class rolls tells apart classes the agnostic loss cannot."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lowrank_amt import families
from lowrank_amt.factorization import nmf, nmfd
from lowrank_amt.factorization.core import mu_exponent
from lowrank_amt.factorization.training import solve_activations
from lowrank_amt.deep.harmonic_net import transcription_loss
from lowrank_amt.factorization.unrolled_mu import UnrolledMU
from lowrank_amt.runtime.io import read_json
from lowrank_amt.decoding.steering import Steering
from lowrank_amt.stages import evaluate as evaluation, train as training, transcribe as transcription

SPEC = {"family": "unrolled", "train_iterations": 30, "layers": 5, "epochs": 4, "patience": 10,
        "learning_rate": 0.03, "device": "cpu"}
EVALUATION = {"onset_tolerance": 0.05, "offset_ratio": 0.2}
QUIET = lambda message: None  # noqa: E731

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: How closely the unrolled layers must follow plain MU. They compute the same formula in
#: another order (a power with a tensor exponent, the scale multiplied in), and vector
#: kernels round such orders differently on different CPUs (AVX-512 against AVX2: up to
#: 3 float32 units in the last place after 7 layers), so the comparison allows about 8
#: units (float32's is 1.2e-7); atol only covers the eps-floored entries of silent frames.
RTOL, ATOL = 1e-6, 1e-12


def unrolled_and_plain(numerics, beta, layers=7):
    gen = torch.Generator().manual_seed(0)
    W = torch.rand(*((4,) if numerics is nmfd else ()), 60, 88, generator=gen)
    W /= W.reshape(-1, 88).sum(dim=0)
    V = torch.rand(60, 150, generator=gen)
    V[:, 40:50] = 0  # silent frames: a zero MU ratio
    plain = solve_activations(numerics, V, W, beta=beta, n_iter=layers)["H"]
    return UnrolledMU(numerics, W, np.arange(88), beta, layers=layers, floor=1e-3), V, plain


@pytest.mark.parametrize("numerics, beta", [(nmf, 1.0), (nmf, 2.0), (nmf, 0.5), (nmfd, 1.0), (nmfd, 2.0)])
def test_with_nothing_learned_the_layers_are_plain_mu_iterations(numerics, beta):
    model, V, plain = unrolled_and_plain(numerics, beta)
    torch.testing.assert_close(model.activations(V[None])[0], plain, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("numerics, beta", [(nmf, 1.0), (nmf, 0.5), (nmfd, 1.0)])
def test_the_tolerance_catches_one_layers_step_changed_by_1e_5(numerics, beta):
    model, V, plain = unrolled_and_plain(numerics, beta)
    with torch.no_grad():
        model.log_scale[-1] = math.log1p(1e-5)  # the last step 1e-5 larger: H moves by gamma * 1e-5
    with pytest.raises(AssertionError):
        torch.testing.assert_close(model.activations(V[None])[0], plain, rtol=RTOL, atol=ATOL)


def train(index, out, spec=SPEC, log=QUIET):
    training.train(spec, index, out / "model.npz", out / "loss.csv", out / "train.json", log=log,
                   checkpoint_dir=out / "checkpoints")
    return pd.read_csv(out / "loss.csv")


def test_training_lowers_the_validation_loss_on_the_isolated_note_dictionary(lowrank_cache, tmp_path):
    index = lowrank_cache[0] / "index.csv"
    losses = train(index, tmp_path / "unrolled")
    validation = losses[losses["split"] == "validation"]["loss"].to_numpy()
    assert len(validation) == 4 and validation[-1] < 0.95 * validation[0]
    # W is the supervised NMF model's of the same beta, iterations and seed, unchanged
    training.train({"family": "nmf", "train_iterations": 30, "device": "cpu"}, index, tmp_path / "nmf.npz",
                   tmp_path / "nmf.csv", tmp_path / "nmf.json", log=QUIET)
    with np.load(tmp_path / "unrolled" / "model.npz") as a, np.load(tmp_path / "nmf.npz") as b:
        assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["template_keys"], b["template_keys"])
    info = read_json(tmp_path / "unrolled" / "train.json")
    # 5 layers of 88 scales and an exponent, five heads' 88 values, and the frozen 264 x 88 W
    assert info["epochs"] == 4 and info["n_parameters"] == 5 * 88 + 5 + 5 * 88 + 264 * 88
    # the shared activations, decode and evaluation stages read it like any model
    out = tmp_path / "unrolled"
    transcription.activations(out / "model.npz", index, out / "a.npz", out / "a.json", log=QUIET)
    transcription.decode(out / "model.npz", out / "a.npz", index, {"thresholds": [0.1, 0.3, 0.5], "min_note_seconds": 0.05},
                         EVALUATION, out / "midi", out / "decoding.json", log=QUIET)
    scores = evaluation.evaluate(out / "midi", index, EVALUATION, out / "per_track.csv", log=QUIET)
    assert scores["note_onset_f"].mean() > 0.9


def test_bin_gains_on_a_fixed_number_of_steps_lower_the_validation_loss(lowrank_cache, tmp_path):
    index = lowrank_cache[0] / "index.csv"
    losses = train(index, tmp_path / "gains", {**SPEC, "learn_bin_gains": True, "steps_per_epoch": 3})
    validation = losses[losses["split"] == "validation"]["loss"].to_numpy()
    assert len(validation) == 4 and validation[-1] < 0.95 * validation[0]
    info = read_json(tmp_path / "gains" / "train.json")
    # the plain model's numbers and 5 layers of 264 bin gains
    assert info["n_parameters"] == 5 * 88 + 5 + 5 * 88 + 264 * 88 + 5 * 264
    with np.load(tmp_path / "gains" / "model.npz") as a:
        assert a["weights/log_bin_gain"].shape == (5, 264) and np.abs(a["weights/log_bin_gain"]).max() > 0


class Interrupted(Exception):
    pass


AUGMENTED = {"steps_per_epoch": 2, "augment": {"gain_db": 6, "eq_db": 6, "reverb_seconds": 0.5, "noise_db": -30}}


@pytest.mark.parametrize("parts", [{}, {"learn_bin_gains": True, "steps_per_epoch": 2}, AUGMENTED,
                                   {"untie_layers": True, "steps_per_epoch": 2},
                                   {"adapt_recording": True, "steps_per_epoch": 2}])
def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(lowrank_cache, tmp_path, parts):
    index = lowrank_cache[0] / "index.csv"
    spec = {**SPEC, "epochs": 3, **parts}
    uninterrupted = train(index, tmp_path / "a", spec)

    def crash_after_epoch_2(message):
        if message.startswith("epoch 2:"):
            raise Interrupted

    with pytest.raises(Interrupted):
        train(index, tmp_path / "b", spec, log=crash_after_epoch_2)
    resumed = train(index, tmp_path / "b", spec)
    timing = ["frames_per_second"]  # the speed of each epoch differs between runs, nothing else
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), uninterrupted.drop(columns=timing))
    if "adapt_recording" in parts:  # the adaptation's steps are learned, from zero
        with np.load(tmp_path / "a" / "model.npz") as a:
            assert a["weights/adapt_step"].shape == (5,) and np.abs(a["weights/adapt_step"]).max() > 0
    if "augment" in parts:  # it trains on other features than the same schedule without it
        plain = train(index, tmp_path / "plain", {**spec, "augment": {}})
        assert not np.allclose(plain["loss"], uninterrupted["loss"])
    with np.load(tmp_path / "a" / "model.npz") as a, np.load(tmp_path / "b" / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k != "config")
        assert ("weights/log_bin_gain" in a.files) == parts.get("learn_bin_gains", False)
    if parts.get("learn_bin_gains"):  # the learned gains are read back: the model transcribes as the trained one
        family, resolved = families.resolve(spec)
        with np.load(tmp_path / "a" / "model.npz") as data:
            arrays = {k: data[k] for k in data.files}
        model = family.load(arrays, resolved, "cpu")
        assert np.array_equal(model.log_bin_gain.detach().numpy(), arrays["weights/log_bin_gain"])
        assert model.log_bin_gain.abs().max() > 0


def test_steering_and_adaptation_keep_the_learned_layers(lowrank_cache, tmp_path):
    index = lowrank_cache[0] / "index.csv"
    train(index, tmp_path / "run", {**SPEC, "epochs": 1})
    family, spec = families.resolve({**SPEC, "epochs": 1})
    with np.load(tmp_path / "run" / "model.npz") as data:
        arrays = {k: data[k] for k in data.files if k not in ("family", "spec", "features", "provenance")}
    steered = family.steer(arrays, spec, Steering.from_options(("C4", "C5"), None, None, None, 0.5, None, 0.2, 0.3))
    assert steered["W"].shape[1] == 13 and steered["weights/log_scale"].shape == (5, 13)
    assert np.array_equal(steered["weights/note_gain"], arrays["weights/note_gain"])
    features, roll = np.load(lowrank_cache[0] / "train_0.npy"), np.load(lowrank_cache[0] / "train_0.roll.npy")
    adapted = family.adapt(arrays, spec, features, roll, torch.device("cpu"), iterations=5)
    assert not np.array_equal(adapted["W"], arrays["W"])
    assert np.array_equal(adapted["weights/log_scale"], arrays["weights/log_scale"])
    transcribe = family.transcriber(steered, spec, torch.device("cpu"))
    outputs = transcribe(features)
    assert outputs["note"].shape == outputs["onset"].shape == roll.shape


@pytest.mark.parametrize("numerics, beta", [(nmf, 1.0), (nmf, 0.5), (nmfd, 1.0)])
def test_bin_gains_at_zero_are_plain_mu_and_weight_the_divergence_per_bin(numerics, beta):
    model, V, plain = unrolled_and_plain(numerics, beta)
    gains = UnrolledMU(numerics, model.W, np.arange(88), beta, layers=7, floor=1e-3, learn_bin_gains=True)
    torch.testing.assert_close(gains.activations(V[None])[0], plain, rtol=RTOL, atol=ATOL)
    # a gain g on a bin is MU for the divergence weighted by g ** beta there: one layer's
    # step against the weighted MU written out from its gradient
    weight = torch.linspace(0.5, 2.0, V.shape[0])
    with torch.no_grad():
        gains.log_bin_gain[0] = weight.log() / beta
    H0 = numerics.init_activations(V[None], model.W)["H"]
    H = H0.clone().requires_grad_(True)
    V_hat = numerics.reconstruct(model.W, {"H": H}).clamp_min(1e-10)
    ratio_weighted = (weight[:, None] * V * V_hat ** (beta - 2)).detach()
    numerator = torch.autograd.grad((ratio_weighted * V_hat).sum(), H, retain_graph=True)[0]
    denominator = torch.autograd.grad((weight[:, None] * V_hat ** beta / beta).sum(), H)[0]
    expected = (H0 * (numerator / denominator) ** mu_exponent(beta)).clamp_min(1e-10)
    one_layer = UnrolledMU(numerics, model.W, np.arange(88), beta, layers=1, floor=1e-3, learn_bin_gains=True)
    with torch.no_grad():
        one_layer.log_bin_gain[0] = weight.log() / beta
    torch.testing.assert_close(one_layer.activations(V[None]), expected, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("numerics, beta", [(nmf, 1.0), (nmf, 0.5), (nmfd, 1.0)])
def test_untied_layers_at_their_start_are_plain_mu_and_each_layer_reads_its_own_dictionary(numerics, beta):
    model, V, plain = unrolled_and_plain(numerics, beta)
    untied = UnrolledMU(numerics, model.W, np.arange(88), beta, layers=7, floor=1e-3, untie_layers=True)
    torch.testing.assert_close(untied.activations(V[None])[0], plain, rtol=RTOL, atol=ATOL)
    # a change to the third layer's dictionary changes the output; the model's W is the last layer's
    with torch.no_grad():
        untied.log_W_change[2, ..., :30, 5] += 0.5  # a change of shape, not of scale
    assert not torch.allclose(untied.activations(V[None])[0], plain, rtol=1e-4)
    torch.testing.assert_close(untied.W, model.W, rtol=1e-6, atol=0)
    with torch.no_grad():
        untied.log_W_change[-1, ..., :30, 5] += 0.5
    assert not torch.allclose(untied.W, model.W, rtol=1e-4)


def test_untied_layers_train_each_their_dictionary_and_are_assessed_per_layer(lowrank_cache, tmp_path):
    index = lowrank_cache[0] / "index.csv"
    spec = {**SPEC, "untie_layers": True, "steps_per_epoch": 3}
    losses = train(index, tmp_path / "untied", spec)
    validation = losses[losses["split"] == "validation"]["loss"].to_numpy()
    assert validation[-1] < 0.95 * validation[0]
    family, resolved = families.resolve(spec)
    with np.load(tmp_path / "untied" / "model.npz") as data:
        arrays = {k: data[k] for k in data.files}
    layers = family.layer_dictionaries(arrays, resolved)
    assert len(layers) == 5 and all(W.shape == (264, 88) for W in layers)
    assert not np.allclose(layers[0], layers[-1], rtol=1e-3)  # each layer learned its own
    np.testing.assert_allclose(layers[-1], family.dictionary(arrays, resolved)[0], rtol=1e-5)
    info = read_json(tmp_path / "untied" / "train.json")
    assert info["n_parameters"] == 5 * 88 + 5 + 5 * 88 + 5 * 264 * 88  # a dictionary per layer, no frozen W
    scores = evaluation.assess(tmp_path / "untied" / "model.npz", index, tmp_path / "interp.json",
                               tmp_path / "templates.csv", log=QUIET)
    assert len(scores["layer_interpretability"]) == 5
    assert scores["layer_interpretability_min"] == min(scores["layer_interpretability"])
    assert min(scores["layer_interpretability"]) > 0.8 and scores["interpretability"] > 0.8
    # steering slices every layer's dictionary; adaptation moves every layer's as it moves W
    steered = family.steer(arrays, resolved, Steering.from_options(("C4", "C5"), None, None, None, 0.5, None, 0.2, 0.3))
    assert steered["weights/log_W_change"].shape == (5, 264, 13) and steered["W_templates"].shape == (264, 13)
    features, roll = np.load(lowrank_cache[0] / "train_0.npy"), np.load(lowrank_cache[0] / "train_0.roll.npy")
    adapted = family.adapt(arrays, resolved, features, roll, torch.device("cpu"), iterations=5)
    layers_after = family.layer_dictionaries(adapted, resolved)
    # each layer's templates change in shape as W does (each keeps its sum: up to a scale per template)
    shape = lambda change: change - change.mean(axis=0)  # noqa: E731
    moved = [shape(np.log(after / before)) for after, before in zip(layers_after, layers)]
    np.testing.assert_allclose(moved[-1], shape(np.log(adapted["W"] / arrays["W"])), atol=1e-4)
    np.testing.assert_allclose(moved[0], moved[-1], atol=1e-4)
    assert np.abs(moved[0]).max() > 1e-3
    assert family.skip({**resolved, "learn_dictionary": True})[0]


@pytest.mark.parametrize("numerics, beta", [(nmf, 1.0), (nmf, 0.5), (nmfd, 1.0)])
def test_recording_adaptation_at_its_start_is_plain_mu(numerics, beta):
    model, V, plain = unrolled_and_plain(numerics, beta)
    adapting = UnrolledMU(numerics, model.W, np.arange(88), beta, layers=7, floor=1e-3, adapt_recording=True)
    torch.testing.assert_close(adapting.activations(V[None])[0], plain, rtol=RTOL, atol=ATOL)
    _, gain = adapting.activations(V[None], with_gain=True)
    assert torch.equal(gain, torch.ones_like(gain))  # a step of zero leaves it 1, exactly


@pytest.mark.parametrize("numerics", [nmf, nmfd])
def test_recording_adaptation_fits_an_unheard_pianos_equaliser_and_lowers_the_reconstruction_loss(numerics):
    """A recording made of the templates under a smooth tilt of 18 dB across the bins
    (another piano's spectral envelope): with MU steps on the recording's gain the model
    reconstructs it better, and the gain it finds follows the tilt. (A step of 0.5: the
    smoothed step is not plain MU's, and a full one overshoots after some 10 layers.)"""
    gen = torch.Generator().manual_seed(1)
    bins = 120
    W = torch.rand(*((4,) if numerics is nmfd else ()), bins, 88, generator=gen) ** 4
    W /= W.reshape(-1, 88).sum(dim=0)
    H_true = torch.rand(88, 200, generator=gen) * (torch.rand(88, 200, generator=gen) < 0.05)
    tilt = 10 ** (torch.linspace(-9, 9, bins) / 20)[:, None]
    V = tilt * numerics.reconstruct(W, {"H": H_true}) + 1e-4
    models = {}
    for step in (0.0, 0.5):
        model = UnrolledMU(numerics, W, np.arange(88), 1.0, layers=20, floor=1e-3, adapt_recording=True,
                           adapt_smoothing=9)
        with torch.no_grad():
            model.adapt_step.fill_(step)
            models[step] = model(V[None]), model.outputs(V[None])[2].item(), model.activations(V[None], True)[1]
    assert models[0.5][1] < 0.5 * models[0.0][1]
    found = torch.log(models[0.5][2][0, :, 0])
    assert np.corrcoef(found.numpy(), torch.log(tilt[:, 0]).numpy())[0, 1] > 0.9


def test_the_class_loss_tells_apart_two_classes_of_the_same_spectrum():
    """Two templates of one key with the same spectrum, one per class, and a mixture of
    that key: the agnostic loss cannot tell them apart (their scales stay equal), the
    class loss against a roll where only the first class plays raises the first's scale."""
    rng = np.random.default_rng(0)
    template = rng.random((24, 1)).astype(np.float32)
    W = torch.from_numpy(np.concatenate([template, template], axis=1))
    V = torch.from_numpy((template * rng.uniform(0.5, 1.5, (1, 40))).astype(np.float32))[None]
    by_class = torch.zeros((1, 2 * 88, 40), dtype=torch.uint8)
    by_class[0, 40] = 1  # class row 0, key 40
    scales = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = UnrolledMU(nmf, W, np.array([40, 40]), 1.0, 3, floor=float(V.mean()))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(20):
            optimizer.zero_grad()
            H, reconstruction = model.template_outputs(V)
            note, onset = model.heads(H)
            loss = transcription_loss(note, onset, by_class.reshape(1, 2, 88, 40).amax(dim=1), False) + reconstruction
            (loss + weight * model.class_loss(H, by_class, torch.tensor([0, 1]))).backward()
            optimizer.step()
        scales[weight] = model.log_scale.detach().sum(dim=0)
    assert abs(float(scales[0.0][0] - scales[0.0][1])) < 1e-5  # equal but for float rounding
    assert scales[1.0][0] > scales[1.0][1] + 0.1, scales[1.0]
