"""Epoch-wise training: online MU reaches the full-batch loss, early stopping, and a run
resumed from an epoch checkpoint ends with the same dictionary as an uninterrupted one."""

import numpy as np
import pytest
import torch

from lowrank_amt.learning.epochs import fit_epochs
from lowrank_amt.factorization import nmf, nmfd
from lowrank_amt.factorization.core import beta_divergence, generator
from lowrank_amt.factorization.training import (DictionaryLearner, GradientStep, OnlineMU, fit_full_batch,
                                                mean_loss, solve_activations)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_epochs(family, updater, batches, *, epochs, inner_iterations, log, patience=0, checkpoint_path=None,
          fingerprint="", **learner_options):
    """(best W, history) of the shared epoch loop driving a dictionary learner."""
    learner = DictionaryLearner(family, updater, batches, beta=1.0, inner_iterations=inner_iterations,
                                **learner_options)
    state = fit_epochs(learner, epochs=epochs, patience=patience, checkpoint_path=checkpoint_path,
                       fingerprint=fingerprint, log=log)
    return state["best"], state["history"]


def dictionary_loss(V, W, beta=1.0):
    """How well a dictionary explains V: activations solved to convergence, W fixed."""
    activations = solve_activations(nmf, V, W, beta=beta, n_iter=500)
    return float(beta_divergence(V, nmf.reconstruct(W, activations), beta))


def quiet(message):
    pass


def test_online_mu_reaches_the_full_batch_loss(planted, array_batches):
    V = planted()
    V_t = torch.from_numpy(V)
    W0 = nmf.init_dictionary(30, 5, float((V_t.mean() / 5).sqrt()), generator(0), V_t)
    W_full, _, _ = fit_full_batch(nmf, V_t, W0, beta=1.0, n_iter=1000, tol=1e-6)
    updater = OnlineMU(W0.clone(), beta=1.0, forget_factor=0.3, total_frames=V.shape[1])
    W_online, history = train_epochs(nmf, updater, array_batches(V, 250), epochs=40, inner_iterations=50, log=quiet)
    full, online = dictionary_loss(V_t, W_full), dictionary_loss(V_t, W_online)
    assert online <= 1.02 * full, (online, full)
    train = [row["loss"] for row in history if row["split"] == "train"]
    assert train[-1] < 0.5 * train[0]


def test_early_stopping_keeps_the_best_dictionary(planted, array_batches):
    V = planted(N=600)
    W0 = nmf.init_dictionary(30, 5, 0.5, generator(0), torch.from_numpy(V))
    # a learning rate this large makes the validation loss go up: training stops and
    # returns the dictionary of the best epoch
    updater = GradientStep(W0.clone(), beta=1.0, optimizer="sgd", learning_rate=5.0, momentum=0.9, lr_decay=1.0)
    W, history = train_epochs(nmf, updater, array_batches(V, 200), epochs=30, inner_iterations=5,
                       validation_batches=array_batches(V, 600), patience=2, log=quiet)
    validation = [row["loss"] for row in history if row["split"] == "validation"]
    assert len(validation) < 30
    assert min(validation) < validation[-1]
    returned = mean_loss(nmf, array_batches(V, 600), W, beta=1.0, n_iter=5, l1=0.0,
                         device="cpu", seed=0, options=None)
    assert returned == pytest.approx(min(validation), rel=1e-6)


class Interrupted(Exception):
    pass


def interrupt_after(epoch):
    def log(message):
        if message.startswith(f"epoch {epoch}:"):
            raise Interrupted
    return log


def segment_batches(ArrayBatches, V, T=10):
    """Segments mode stand-in: (B x F x T) batches."""
    class Segments(ArrayBatches):
        def epoch(self, epoch):
            S = self.V.shape[1] // T
            segments = self.V[:, : S * T].reshape(self.V.shape[0], S, T).transpose(1, 0, 2)
            order = np.random.default_rng([self.seed, epoch]).permutation(S)
            for start in range(0, S, 8):
                chosen = order[start:start + 8]
                yield segments[chosen], np.zeros((len(chosen), 88, T), np.uint8)
    return Segments(V, 80)


@pytest.mark.parametrize("form", ["online_mu", "adam", "sgd"])
@pytest.mark.parametrize("family", [nmf, nmfd], ids=["nmf", "nmfd"])
def test_resuming_gives_the_same_dictionary(tmp_path, planted, array_batches, form, family):
    V = planted(N=400)
    batches = array_batches(V, 100) if family is nmf else segment_batches(array_batches, V)
    options = {"time_extent": 3}

    def run(checkpoint, log):
        W0 = family.init_dictionary(30, 4, 0.5, generator(0), torch.from_numpy(V), **options)
        if form == "online_mu":
            updater = OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=400)
        else:
            updater = GradientStep(W0, beta=1.0, optimizer=form, learning_rate=0.05, momentum=0.9, lr_decay=0.9)
        validation = array_batches(V[:, :100], 100) if family is nmf else None
        # a per-epoch validation score (a function of W) is part of the restored history
        score = (lambda W: float(W.max() / W.mean())) if family is nmf else None
        return train_epochs(family, updater, batches, epochs=4, inner_iterations=3, validation_batches=validation,
                     validation_score=score, checkpoint_path=checkpoint, fingerprint="spec", options=options, log=log)

    W_straight, history_straight = run(tmp_path / "straight.pt", quiet)
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed.pt", interrupt_after(2))
    W_resumed, history_resumed = run(tmp_path / "resumed.pt", quiet)
    assert torch.equal(W_straight, W_resumed)
    assert history_straight == history_resumed
    assert len(history_straight) >= 4
    if family is nmf:
        assert sum("validation_note_f" in row for row in history_straight) == 4  # each epoch's validation row


def test_a_checkpoint_of_another_spec_is_refused(tmp_path, planted, array_batches):
    from lowrank_amt.errors import LowrankAmtError
    V = planted(N=200)
    W0 = nmf.init_dictionary(30, 4, 0.5, generator(0), torch.from_numpy(V))
    kwargs = dict(epochs=1, inner_iterations=2, checkpoint_path=tmp_path / "last.pt", log=quiet)
    train_epochs(nmf, OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=200), array_batches(V, 100),
          fingerprint="a", **kwargs)
    with pytest.raises(LowrankAmtError, match="last.pt belongs to another model spec"):
        train_epochs(nmf, OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=200), array_batches(V, 100),
              fingerprint="b", **kwargs)


class Payload:
    """An object a pickle would rebuild by running code: a checkpoint must never hold one."""

    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


@pytest.mark.parametrize("content,message", [("pickled object", "cannot be read as tensors and plain data"),
                                             ("truncated", "is truncated or corrupt")])
def test_a_checkpoint_that_is_not_plain_data_is_refused(tmp_path, planted, array_batches, content, message, capsys):
    from lowrank_amt.errors import LowrankAmtError
    V = planted(N=200)
    W0 = nmf.init_dictionary(30, 4, 0.5, generator(0), torch.from_numpy(V))
    kwargs = dict(epochs=1, inner_iterations=2, checkpoint_path=tmp_path / "last.pt", log=quiet)
    train_epochs(nmf, OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=200), array_batches(V, 100),
                 fingerprint="a", **kwargs)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    if content == "pickled object":
        torch.save({**saved, "extra": Payload()}, tmp_path / "last.pt")
    else:
        data = (tmp_path / "last.pt").read_bytes()
        (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(LowrankAmtError, match=f"checkpoint .*last.pt {message}"):
        train_epochs(nmf, OnlineMU(W0, beta=1.0, forget_factor=0.5, total_frames=200), array_batches(V, 100),
                     fingerprint="a", **kwargs)
    assert "code ran" not in capsys.readouterr().out
