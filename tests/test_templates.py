"""Several templates per key and attack templates (families/lowrank.py): the layout and
masks, the loader's attack rows, planted templates recovered, the attack model's better
fit of a note with an attack, exact resume, and the decoder's attack onsets."""

import numpy as np
import pandas as pd
import pytest
import torch


from lowrank_amt.constants import MIDI_MIN, N_KEYS
from lowrank_amt.decoding.decode import activations_to_notes
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.factorization.training import solve_activations
from lowrank_amt.families import get as get_family, resolve
from lowrank_amt.families.lowrank import template_layout
from lowrank_amt.signal.targets import frame_targets
from lowrank_amt.learning.loader import FrameBatches, attack_rows
from lowrank_amt.stages import train as training
from lowrank_amt.signal.feature_cache import record_checksums

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRAME_RATE = 22050 / 512


def quiet(message):
    pass


def test_layout_and_masks_follow_the_roll():
    spec = {"supervision": "semi_supervised", "templates_per_key": 3, "attack_frames": 2}
    keys, attack = template_layout(spec)
    assert keys.tolist()[:7] == [0, 0, 0, 1, 1, 1, 2] and len(keys) == 4 * N_KEYS
    assert attack.sum() == N_KEYS and keys[attack == 1].tolist() == list(range(N_KEYS))
    targets = frame_targets(np.array([[0.1, 0.5], [0.2, 0.3]]), np.array([60, 62]), 40, FRAME_RATE)
    rows = np.concatenate([targets["roll"], attack_rows(targets["onsets"], 2)])
    mask = get_family("nmf").mask_of(spec)(rows)
    assert mask.shape == (4 * N_KEYS, 40)
    for template, (key, is_attack) in enumerate(zip(keys, attack)):  # each template is its key's row
        expected = attack_rows(targets["onsets"], 2)[key] if is_attack else targets["roll"][key]
        assert np.array_equal(mask[template], expected)
    onset = int(np.flatnonzero(targets["onsets"][60 - MIDI_MIN])[0])
    assert np.flatnonzero(mask[3 * N_KEYS + 60 - MIDI_MIN]).tolist() == [onset, onset + 1]


def test_loader_attack_rows_cross_chunk_boundaries(tmp_path):
    """Attack rows computed chunk by chunk equal those of the whole track."""
    n = 50
    onsets = np.zeros((N_KEYS, n), np.uint8)
    onsets[5, [7, 15, 31, 47]] = 1  # 7 and 15 end chunks of 8 frames: their attacks cross
    roll = np.maximum.accumulate(onsets, axis=1)
    np.save(tmp_path / "t.npy", np.ones((4, n), np.float32))
    np.save(tmp_path / "t.roll.npy", roll)
    np.save(tmp_path / "t.onsets.npy", onsets)
    pd.DataFrame([{"track_id": "t", "split": "train", "features_path": "t.npy", "roll_path": "t.roll.npy",
                   "onsets_path": "t.onsets.npy", "n_frames": n}]).to_csv(tmp_path / "index.csv", index=False)
    record_checksums(tmp_path)
    batches = FrameBatches(tmp_path / "index.csv", "train", 1000, 0, shuffle=False, chunk_frames=8,
                           attack_frames=3)
    (features, targets), = list(batches.epoch(0))
    assert targets.shape == (2 * N_KEYS, n)
    assert np.array_equal(targets[:N_KEYS], roll)
    assert np.array_equal(targets[N_KEYS:], attack_rows(onsets, 3))
    assert np.flatnonzero(targets[N_KEYS + 5]).tolist() == [7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49]


def comb(weights, n_bins=264):
    """Each key's harmonics with ``weights`` on a 3-bins-per-semitone axis, unit sum."""
    W = np.full((n_bins, N_KEYS), 1e-4)
    for key in range(N_KEYS):
        for h, weight in enumerate(weights, 1):
            b = 3 * key + int(round(36 * np.log2(h)))
            if b < n_bins:
                W[b, key] += weight
    return W / W.sum(axis=0)


#: Two planted pianos: falling harmonics, and strong even harmonics.
PIANOS = (comb([1, 0.5, 0.33, 0.25, 0.2, 0.17, 0.14, 0.12]), comb([0.3, 1, 0.1, 0.9, 0.1, 0.6, 0.05, 0.4]))


def two_piano_cache(folder, track_writer, random_piece, attack=None, n_train=4):
    """Training pieces alternating between the two planted pianos, an isolated-note
    track of each, a validation piece on the first and a test piece on the second."""
    rng = np.random.default_rng(3)
    pianos = PIANOS
    keys = np.arange(MIDI_MIN, MIDI_MIN + N_KEYS)
    isolated = np.stack([0.1 + 0.3 * np.arange(N_KEYS), 0.1 + 0.3 * np.arange(N_KEYS) + 0.25], axis=1)
    rows = [track_writer(folder, f"isolated_{p}", "isolated", W, isolated, keys, 0.3 * N_KEYS + 1, rng, attack)
            for p, W in enumerate(pianos)]
    for i in range(n_train):
        rows.append(track_writer(folder, f"train_{i}", "train", pianos[i % 2], *random_piece(rng, 8, 60), 8, rng,
                                 attack))
    rows.append(track_writer(folder, "validation_0", "validation", pianos[0], *random_piece(rng, 8, 30), 8, rng,
                             attack))
    rows.append(track_writer(folder, "test_0", "test", pianos[1], *random_piece(rng, 8, 30), 8, rng, attack))
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    record_checksums(folder)
    return pianos


def train(spec, folder, out, log=quiet):
    training.train(spec, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json", log=log,
                   checkpoint_dir=out / "checkpoints")
    return dict(np.load(out / "model.npz"))


@pytest.mark.parametrize("family,form", [("nmf", "full_batch"), ("nmf", "online_mu"), ("nmfd", "full_batch")])
def test_semi_supervised_learns_each_pianos_template(tmp_path, small_spec, track_writer, random_piece, family,
                                                      form):
    """With two templates per key, a key heard on two pianos gets both pianos' templates
    (NMFD's summed over its frames)."""
    pianos = two_piano_cache(tmp_path, track_writer, random_piece)
    spec = {**small_spec, "family": family, "supervision": "semi_supervised", "form": form,
            "templates_per_key": 2, "train_iterations": 300, "epochs": 30, "inner_iterations": 20,
            "batch_frames": 512, "patience": 30, "validation_note_f_every": 0}
    model = train(spec, tmp_path, tmp_path / "out")
    roll = [np.load(tmp_path / f"train_{i}.roll.npy") for i in range(4)]
    heard = [np.concatenate(roll[p::2], axis=1) for p in range(2)]
    # keys heard alone often on both pianos
    alone = [(r.sum(axis=1) > 30) & ((r.sum(axis=0)[None] == 1) & r).any(axis=1) for r in heard]
    keys = np.flatnonzero(alone[0] & alone[1])
    assert len(keys) >= 3
    best = []
    for key in keys:
        learned = get_family(family).numerics.spectral_templates(model["W"])[:, model["template_keys"] == key]
        assert learned.shape[1] == 2
        assert np.corrcoef(pianos[0][:, key], pianos[1][:, key])[0, 1] < 0.8  # one template fits not both
        best += [max(np.corrcoef(learned[:, j], piano[:, key])[0, 1] for j in range(2)) for piano in pianos]
    assert min(best) > 0.85 and np.mean(best) > 0.95, best


def test_masks_hold_with_templates_per_key_and_attacks(tmp_path, small_spec, track_writer, random_piece):
    """Training activations of every template stay zero where its mask is silent."""
    two_piano_cache(tmp_path, track_writer, random_piece, attack=np.full((264, N_KEYS), 2e-3))
    family = get_family("nmf")
    spec = {**small_spec, "family": "nmf", "supervision": "semi_supervised", "templates_per_key": 2,
            "attack_frames": 2}
    batches = FrameBatches(tmp_path / "index.csv", "train", 512, 0, attack_frames=2)
    features, targets = next(iter(batches.epoch(0)))
    mask = torch.from_numpy(family.mask_of(spec)(targets).astype(np.float32))
    V = torch.from_numpy(features)
    W = torch.rand(264, 3 * N_KEYS, generator=torch.Generator().manual_seed(0)) + 0.1
    H = solve_activations(family.numerics, V, W, beta=1.0, n_iter=10, mask=mask)["H"]
    assert torch.all(H[mask == 0] == 0) and torch.all(H[mask == 1] > 0)
    assert 0 < int(mask[2 * N_KEYS:].sum()) < int(mask[:N_KEYS].sum())


def fit_loss(model, family, features, spec):
    V = torch.from_numpy(np.array(features, dtype=np.float32))
    W = torch.from_numpy(model["W"])
    activations = solve_activations(family.numerics, V, W, beta=1.0, n_iter=100)
    return float(family.numerics.loss(V, W, activations, 1.0)[0])


def test_the_attack_model_fits_notes_with_an_attack_better(tmp_path, small_spec, track_writer, random_piece):
    """Notes with a broadband attack: supervised templates with an attack template per
    key reconstruct an unheard piece better than one template per key, and their
    onset output peaks where the notes begin."""
    rng = np.random.default_rng(0)
    attack = rng.uniform(0.5, 1.5, (264, N_KEYS)) * 0.01
    two_piano_cache(tmp_path, track_writer, random_piece, attack=attack)
    spec = {**small_spec, "family": "nmf", "supervision": "supervised", "train_iterations": 100}
    plain = train(spec, tmp_path, tmp_path / "plain")
    with_attack = train({**spec, "attack_frames": 2}, tmp_path, tmp_path / "attack")
    assert with_attack["W"].shape[1] == 2 * N_KEYS and with_attack["template_attack"].sum() == N_KEYS
    family = get_family("nmf")
    test = np.load(tmp_path / "test_0.npy")
    assert fit_loss(with_attack, family, test, spec) < 0.8 * fit_loss(plain, family, test, spec)
    _, full = resolve({**spec, "attack_frames": 2, "transcribe_iterations": 100})
    outputs = family.transcriber(with_attack, full, torch.device("cpu"))(test)
    onsets = np.load(tmp_path / "test_0.onsets.npy").astype(bool)
    assert outputs["onset"][onsets].mean() > 5 * outputs["onset"][~onsets].mean()


def test_resume_is_exact_with_templates_per_key_and_attacks(tmp_path, small_spec, track_writer, random_piece):
    two_piano_cache(tmp_path, track_writer, random_piece, attack=np.full((264, N_KEYS), 2e-3))
    spec = {**small_spec, "family": "nmf", "supervision": "semi_supervised", "form": "online_mu",
            "templates_per_key": 2, "attack_frames": 2, "epochs": 4, "patience": 10}
    straight = train(spec, tmp_path, tmp_path / "straight")

    def interrupt(message):
        if message.startswith("epoch 2:"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(spec, tmp_path, tmp_path / "resumed", log=interrupt)
    resumed = train(spec, tmp_path, tmp_path / "resumed")
    assert np.array_equal(straight["W"], resumed["W"])
    assert np.array_equal(straight["template_attack"], resumed["template_attack"])


def test_attack_onsets_split_a_re_struck_key():
    """A key struck twice without release: one note by its sustained activation, two by
    the peaks of its attack activation."""
    H = np.zeros((N_KEYS, 100))
    H[40, 10:80] = np.linspace(1.0, 0.6, 70)
    attack = np.zeros_like(H)
    attack[40, [10, 11, 45, 46]] = [1.0, 0.5, 0.8, 0.4]
    plain = activations_to_notes(H, 40.0, threshold=0.2, onset="peaks")
    struck = activations_to_notes(H, 40.0, threshold=0.2, onset="attack", attack=attack)
    assert len(plain[1]) == 1
    assert struck[1].tolist() == [MIDI_MIN + 40] * 2
    assert struck[0][:, 0].tolist() == pytest.approx([10 / 40, 45 / 40])
    with pytest.raises(ValueError, match="onset activations"):
        activations_to_notes(H, 40.0, threshold=0.2, onset="attack")


def test_semi_supervised_training_can_start_from_the_isolated_notes(tmp_path, small_spec, track_writer,
                                                                    random_piece):
    """From the isolated-note templates, online MU refines the keys the pieces play and
    leaves every other key's template exactly as the isolated notes gave it."""
    two_piano_cache(tmp_path, track_writer, random_piece)
    spec = {**small_spec, "family": "nmf", "supervision": "semi_supervised", "form": "online_mu", "epochs": 2,
            "validation_note_f_every": 0}
    supervised = train({**small_spec, "family": "nmf", "supervision": "supervised"}, tmp_path, tmp_path / "sup")
    started = train({**spec, "dictionary_start": "isolated"}, tmp_path, tmp_path / "isolated")
    random = train(spec, tmp_path, tmp_path / "random")
    roll = np.concatenate([np.load(tmp_path / f"train_{i}.roll.npy") for i in range(4)], axis=1)
    unplayed, played = ~roll.any(axis=1), roll.sum(axis=1) > 20
    assert unplayed.sum() > 10 and played.sum() > 10
    np.testing.assert_allclose(started["W"][:, unplayed], supervised["W"][:, unplayed], rtol=1e-4, atol=1e-9)
    assert not np.allclose(started["W"][:, played], supervised["W"][:, played], rtol=1e-3)
    true = (PIANOS[0] + PIANOS[1]) / 2  # the pieces alternate between the two pianos

    def fit(model):
        return min(np.corrcoef(model["W"][:, k], true[:, k])[0, 1] for k in np.flatnonzero(played))
    assert fit(started) > fit(random) + 0.1, (fit(started), fit(random))


@pytest.mark.parametrize("supervision,form", [("supervised", "full_batch"), ("semi_supervised", "full_batch"),
                                              ("semi_supervised", "online_mu")])
def test_attack_templates_on_a_cache_without_onsets_name_it(tmp_path, small_spec, track_writer, random_piece,
                                                            supervision, form):
    two_piano_cache(tmp_path, track_writer, random_piece)
    index = pd.read_csv(tmp_path / "index.csv").drop(columns="onsets_path")
    index.to_csv(tmp_path / "index.csv", index=False)
    spec = {**small_spec, "family": "nmf", "supervision": supervision, "form": form, "attack_frames": 2}
    with pytest.raises(LowrankAmtError, match="onset"):
        train(spec, tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "model.npz").exists()
