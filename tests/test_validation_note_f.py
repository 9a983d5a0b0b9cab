"""The validation note F that the mini-batch forms log each epoch: it is the score of the
dictionary the model would save, it rises on a planted problem, it survives a resume,
and its interval and plot work."""

import numpy as np
import pandas as pd
import pytest
import torch

from lowrank_amt import families
from lowrank_amt.decoding.decode import activations_to_notes
from lowrank_amt.errors import LowrankAmtError
from lowrank_amt.evaluation.metrics import note_metrics
from lowrank_amt.evaluation.notes import read_midi_notes
from lowrank_amt.factorization import nmf
from lowrank_amt.factorization.activations import track_activations
from lowrank_amt.factorization.core import generator
from lowrank_amt.factorization.training import DictionaryLearner, OnlineMU
from lowrank_amt.learning.epoch_scoring import VALIDATION_THRESHOLDS
from lowrank_amt.report import run_plots
from lowrank_amt.signal.feature_cache import load_track, read_index
from lowrank_amt.stages import report
from lowrank_amt.stages import train as training

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEMI = {"family": "nmf", "supervision": "semi_supervised", "form": "online_mu", "epochs": 4, "patience": 0}


@pytest.fixture
def semi(small_spec):
    return {**small_spec, **SEMI}


def train(folder, out, spec, log=lambda m: None, checkpoint_dir=None):
    training.train(spec, folder / "index.csv", out / "model.npz", out / "loss.csv", out / "train.json",
                   log=log, checkpoint_dir=checkpoint_dir)
    return pd.read_csv(out / "loss.csv")


def independent_note_f(folder, model_path, spec):
    """Transcribe the validation tracks with a saved model, decode at each threshold of
    the scorer's grid, score with mir_eval; the best threshold's mean note onset F."""
    model = np.load(model_path)
    family, spec = families.resolve(spec)
    index = read_index(folder / "index.csv", "validation")
    best = 0.0
    for threshold in VALIDATION_THRESHOLDS:
        scores = []
        for row in index.itertuples():
            H = track_activations(family, load_track(row)[0], model["W"], model["template_keys"], spec, torch.device("cpu"))["note"]
            est = activations_to_notes(H, float(row.frame_rate), threshold, min_note_seconds=0.05)
            ref = read_midi_notes(row.midi_path)
            scores.append(note_metrics(ref[0], ref[1], est[0], est[1], onset_tolerance=0.05)["note_onset_f"])
        best = max(best, float(np.mean(scores)))
    return best


def test_logged_note_f_is_the_saved_dictionarys_and_rises(lowrank_cache, semi, tmp_path):
    folder, _ = lowrank_cache
    losses = train(folder, tmp_path, semi)
    validation = losses[losses["split"] == "validation"].reset_index(drop=True)
    assert losses.loc[losses["split"] == "train", "validation_note_f"].isna().all()
    scores = validation["validation_note_f"].to_numpy()
    assert len(scores) == 4 and np.all((scores >= 0) & (scores <= 1))
    # planted harmonic templates, activations confined to the roll: transcription improves
    assert scores[-1] > scores[0] and scores[-1] > 0.5
    # the saved model is the dictionary of the best validation loss; its logged F is
    # what decoding and scoring the saved model gives
    saved_epoch = int(validation["loss"].idxmin())
    assert independent_note_f(folder, tmp_path / "model.npz", semi) == pytest.approx(scores[saved_epoch], abs=1e-12)
    # the loss curves still plot from a loss.csv with the extra column
    run_plots.loss_curves_plot(report.loss_table({"semi": tmp_path / "loss.csv"}), tmp_path / "loss.svg")
    assert (tmp_path / "loss.svg").stat().st_size > 0


class Interrupted(Exception):
    pass


def test_resumed_training_logs_the_same_note_f(lowrank_cache, small_spec, tmp_path):
    folder, _ = lowrank_cache
    spec = {**small_spec, "family": "nmf", "supervision": "unsupervised", "form": "gradient", "epochs": 3,
            "patience": 0, "rank": 20}
    straight = train(folder, tmp_path, spec, checkpoint_dir=tmp_path / "straight")

    def interrupt(message):
        if message.startswith("epoch 2:"):
            raise Interrupted

    with pytest.raises(Interrupted):
        train(folder, tmp_path, spec, log=interrupt, checkpoint_dir=tmp_path / "resumed")
    resumed = train(folder, tmp_path, spec, checkpoint_dir=tmp_path / "resumed")
    pd.testing.assert_frame_equal(straight, resumed)
    assert resumed["validation_note_f"].notna().sum() == 3


def test_interval_and_switch(lowrank_cache, semi, tmp_path):
    folder, _ = lowrank_cache
    every_two = train(folder, tmp_path, {**semi, "epochs": 3, "validation_note_f_every": 2})
    logged = every_two.loc[every_two["split"] == "validation", "validation_note_f"]
    assert logged.notna().tolist() == [False, True, False]
    assert "validation_note_f" not in train(folder, tmp_path, {**semi, "epochs": 1, "validation_note_f_every": 0})
    with pytest.raises(LowrankAmtError, match="validation_note_f_every"):
        families.resolve({"family": "nmf", "validation_note_f_every": -1})


def test_a_score_needs_validation_batches(planted, array_batches):
    V = planted(N=200)
    W0 = nmf.init_dictionary(30, 4, 0.5, generator(0), torch.from_numpy(V))
    with pytest.raises(ValueError, match="validation_batches"):
        DictionaryLearner(nmf, OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=200), array_batches(V, 100),
                          beta=1.0, inner_iterations=2, validation_score=lambda W: 0.0)
