"""The one epoch loop: every model trained over mini-batches (the low-rank mini-batch
forms and the networks) goes through ``fit_epochs``.

A *learner* owns the model and what moves it; the loop owns the schedule around it:

* ``learner.train_epoch(epoch) -> float``: one pass over the shuffled training batches
  of epoch ``epoch`` (0-based; the batches depend only on the seed and the epoch), the
  mean training loss per frame;
* ``learner.validate(epoch) -> dict | None``: ``{"loss": ...}`` on the validation split,
  and any further logged scores (e.g. ``validation_note_f``); None without validation
  data (early stopping then watches the training loss);
* ``learner.learning_rate``: the rate the epoch runs at (None where it has none);
  ``learner.end_epoch()``: the schedule's step;
* ``learner.snapshot()``: a copy of what would be saved (the best epoch's is kept);
* ``learner.state_dict()`` / ``learner.load_state_dict(state)``: everything a resume needs.

Early stopping after ``patience`` epochs without a lower watched loss (0: never). After
every epoch a checkpoint (``torch.save`` of the learner, the torch RNG, the history and
the best snapshot: tensors and plain containers, loaded with ``weights_only=True``) is
written atomically. A checkpoint with the same ``fingerprint`` is resumed, so an
interrupted run ends with the same model and history as an uninterrupted one; one of
another fingerprint (another spec or data selection), or a damaged one (a member failing
the CRC-32 its zip recorded), is refused with an error naming it. The caller removes the
checkpoint once its outputs are written.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..errors import LowrankAmtError
from ..runtime.io import atomic_path, check_zip

#: Name of the checkpoint file inside a run's checkpoint folder.
CHECKPOINT_NAME = "last.pt"


def checkpoint_file(checkpoint_dir) -> Path | None:
    return None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_NAME


def fingerprint(spec: dict, train_hours, n_training_frames: int) -> str:
    """What a checkpoint must match to be resumed: the spec (but the device, so that a
    run moved to another device resumes), the training size and its frames."""
    return json.dumps({"spec": {k: v for k, v in spec.items() if k != "device"}, "train_hours": train_hours,
                       "n_training_frames": int(n_training_frames)}, sort_keys=True)


def _resume(learner, checkpoint_path, fingerprint: str, device, log) -> dict | None:
    if checkpoint_path is None or not Path(checkpoint_path).exists():
        return None
    # torch's reader does not check the CRC-32 its zip records: a damaged byte would load
    check_zip(checkpoint_path, "checkpoint", "delete it to train from scratch")
    try:  # tensors and plain containers only: a checkpoint is data, never code to run
        saved = torch.load(checkpoint_path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many kinds on a truncated, foreign or pickled file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LowrankAmtError(f"checkpoint {checkpoint_path} cannot be read as tensors and plain data "
                              f"({reason}); delete it to train from scratch") from exc
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        raise LowrankAmtError(f"checkpoint {checkpoint_path} belongs to another model spec or data "
                              "selection; delete it to train from scratch")
    learner.load_state_dict(saved["learner"])
    torch.set_rng_state(saved["rng"])
    log(f"resumed from {checkpoint_path} after epoch {saved['state']['epoch']}")
    return saved["state"]


def _epoch_rows(epoch: int, train_loss: float, validation: dict | None, learning_rate) -> list[dict]:
    rows = [{"epoch": epoch, "split": "train", "loss": train_loss, "learning_rate": learning_rate}]
    if validation is not None:
        rows.append({"epoch": epoch, "split": "validation", "learning_rate": learning_rate, **validation})
    return rows


def _describe(rows: list[dict], stopped: bool) -> str:
    extra = [f"{k} {v:.4g}" for k, v in rows[-1].items()
             if k not in ("epoch", "split", "loss", "learning_rate") and v is not None]
    return (", ".join(f"{r['split']} loss {r['loss']:.6g}" for r in rows) + "".join(f", {e}" for e in extra)
            + (" (early stop)" if stopped else ""))


def fit_epochs(learner, *, epochs: int, patience: int = 0, checkpoint_path=None, fingerprint: str = "",
               device="cpu", log=print) -> dict:
    """Train ``learner`` for at most ``epochs`` epochs (see the module docstring).

    Returns the loop's state: ``best`` (the snapshot of the epoch with the lowest watched
    loss), ``history`` (rows {epoch, split, loss, learning_rate, ...}, 1-based epochs),
    ``epoch`` (epochs run), ``best_epoch``, ``best_loss``, ``stopped_early``,
    ``seconds`` and ``cpu_seconds`` (training time summed over resumed runs).
    """
    state = _resume(learner, checkpoint_path, fingerprint, device, log) or {
        "epoch": 0, "history": [], "best_loss": math.inf, "best_epoch": 0, "best": learner.snapshot(),
        "stopped_early": False, "seconds": 0.0, "cpu_seconds": 0.0}
    while not state["stopped_early"] and state["epoch"] < epochs:
        wall, cpu = time.perf_counter(), time.process_time()
        epoch, learning_rate = state["epoch"], learner.learning_rate
        train_loss = learner.train_epoch(epoch)
        learner.end_epoch()
        validation = learner.validate(epoch)
        rows = _epoch_rows(epoch + 1, train_loss, validation, learning_rate)
        watched = rows[-1]["loss"]
        if watched < state["best_loss"]:
            state.update(best_loss=watched, best_epoch=epoch + 1, best=learner.snapshot())
        state["history"].extend(rows)
        state["epoch"] = epoch + 1
        state["stopped_early"] = bool(patience) and state["epoch"] - state["best_epoch"] >= patience
        state["seconds"] += time.perf_counter() - wall
        state["cpu_seconds"] += time.process_time() - cpu
        if checkpoint_path is not None:
            with atomic_path(checkpoint_path) as tmp:
                torch.save({"fingerprint": fingerprint, "learner": learner.state_dict(),
                            "rng": torch.get_rng_state(), "state": state}, tmp)
        log(f"epoch {epoch + 1}: {_describe(rows, state['stopped_early'])}")  # once it is saved
    return state
