"""Performance of the factorization core against its peers, each a ratio measured in one run.

    .venv/bin/python bench/bench_factorization.py results.md            # default sizes, minutes on 2 cores
    .venv/bin/python bench/bench_factorization.py results.md --full     # the issue's sizes (264 x 200000, rank 88; 1 h / 10 h)

Rows (speedup = peer seconds / our seconds, > 1 means we are faster):
- ``minibatch_kl_epoch``: one epoch of online-MU KL-NMF (loader-free, in-memory batches)
  vs scikit-learn ``MiniBatchNMF(beta_loss='kullback-leibler', solver='mu')``, same data,
  rank and batch size; ``loss_ratio`` = our final loss / theirs, both dictionaries scored
  the same way (activations of all frames by 200 MU steps with the dictionary fixed);
- ``fullbatch_kl_iteration``: one full-batch KL MU iteration (with its loss) vs
  ``NMF(solver='mu', beta_loss=1)``, same start;
- ``ntd_iteration``: one Euclidean NTD iteration (with its loss) vs tensorly
  ``non_negative_tucker`` (NumPy backend), same tensor, ranks and start;
- ``kl_mu_matmul_fraction``: FLOP/s of one KL-MU iteration's four matrix products over
  the FLOP/s of a plain float32 matmul of the same shape, measured here;
- ``peak_memory_<form>``: peak resident memory of training one epoch on synthetic
  feature caches of the two sizes (separate processes, median of 3: with huge pages
  the peak moves by a few tens of MB between identical runs); ratio = large / small.
Times are the best of 3 runs (1 for the mini-batch rows): on a shared machine the
minimum is the least disturbed. Writes the table as markdown to the given path and as CSV beside it (.csv).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lowrank_amt  # noqa: F401  (before torch: sets its allocator's huge-page switch)
import torch
from lowrank_amt.factorization import nmf, ntd
from lowrank_amt.factorization.core import beta_divergence, generator, update_H
from lowrank_amt.learning.epochs import fit_epochs
from lowrank_amt.factorization.training import DictionaryLearner, OnlineMU, fit_full_batch, solve_activations

from batches import ArrayBatches
from tables import write_table


def update_W(V, W, H, beta: float):
    """One MU step on W for V ~ W H (H fixed): the step on H of the transposed problem."""
    return update_H(V.T, H.T, W.T, beta).T


FRAME_RATE = 22050 / 512


def spectrogram_like(F, N, K, seed=0):
    """Nonnegative F x N data with low-rank structure plus noise (float32)."""
    rng = np.random.default_rng(seed)
    W = rng.gamma(0.3, 1.0, (F, K)).astype(np.float32)
    H = (rng.gamma(0.5, 1.0, (K, N)) * (rng.random((K, N)) < 0.1)).astype(np.float32)
    return W @ H + 0.01 * rng.random((F, N), dtype=np.float32)


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def dictionary_loss(V, W):
    with torch.no_grad():
        activations = solve_activations(nmf, V, W, beta=1.0, n_iter=200)
        return float(beta_divergence(V, nmf.reconstruct(W, activations), 1.0))


def bench_minibatch(F, N, K, batch, epochs, inner, forget=0.5):
    from sklearn.decomposition import MiniBatchNMF
    V = spectrogram_like(F, N, K)
    theirs = MiniBatchNMF(K, beta_loss="kullback-leibler", batch_size=batch, max_iter=epochs, tol=0,
                          max_no_improvement=None, init="random", random_state=0)
    t_theirs, _ = timed(lambda: theirs.fit(V.T))
    W0 = nmf.init_dictionary(F, K, float(np.sqrt(V.mean() / K)), generator(0), torch.from_numpy(V))
    updater = OnlineMU(W0, beta=1.0, forget_factor=forget, total_frames=N)
    learner = DictionaryLearner(nmf, updater, ArrayBatches(V, batch), beta=1.0, inner_iterations=inner)
    t_ours, state = timed(lambda: fit_epochs(learner, epochs=epochs, log=lambda m: None))
    W = state["best"]
    V_t = torch.from_numpy(V)
    ours_loss, their_loss = dictionary_loss(V_t, W), dictionary_loss(V_t, torch.from_numpy(theirs.components_.T.copy()))
    return {"benchmark": "minibatch_kl_epoch", "size": f"{F}x{N} rank {K} batch {batch} ({inner} inner MU)",
            "ours_s": t_ours / epochs, "peer_s": t_theirs / epochs, "peer": "sklearn MiniBatchNMF",
            "speedup": t_theirs / t_ours, "loss_ratio": ours_loss / their_loss, "target": ">= 2 at loss_ratio <= 1"}


def bench_full_batch(F, N, K, n_iter):
    from sklearn.decomposition import NMF
    V = spectrogram_like(F, N, K)
    rng = np.random.default_rng(1)
    W0, H0 = rng.random((F, K), dtype=np.float32) + 0.1, rng.random((K, N), dtype=np.float32) + 0.1
    theirs = NMF(K, solver="mu", beta_loss=1, init="custom", max_iter=n_iter, tol=0)
    t_theirs, _ = timed(lambda: theirs.fit_transform(V.T, W=H0.T.copy(), H=W0.T.copy()), repeat=3)
    V_t = torch.from_numpy(V)
    with torch.no_grad():
        t_ours, _ = timed(lambda: fit_full_batch(nmf, V_t, torch.from_numpy(W0), beta=1.0, n_iter=n_iter), repeat=3)
    return {"benchmark": "fullbatch_kl_iteration", "size": f"{F}x{N} rank {K}", "ours_s": t_ours / n_iter,
            "peer_s": t_theirs / n_iter, "peer": "sklearn NMF(mu)", "speedup": t_theirs / t_ours,
            "target": ">= 1.5"}


def bench_matmul_fraction(F, N, K, n_iter):
    V = torch.from_numpy(spectrogram_like(F, N, K))
    W, H = torch.rand(F, K) + 0.1, torch.rand(K, N) + 0.1

    def iterate():
        nonlocal W, H
        for _ in range(n_iter):
            H = update_H(V, W, H, 1.0)
            W = update_W(V, W, H, 1.0)

    with torch.no_grad():
        t_iter, _ = timed(iterate, repeat=3)
        t_mm, _ = timed(lambda: [W @ H for _ in range(4 * n_iter)], repeat=3)
    flops = 4 * 2 * F * K * N * n_iter  # W H twice, W^T R, R H^T
    return {"benchmark": "kl_mu_matmul_fraction", "size": f"{F}x{N} rank {K}", "ours_s": t_iter / n_iter,
            "peer_s": t_mm / n_iter, "peer": "4 plain float32 matmuls",
            "speedup": t_mm / t_iter, "gflops": flops / t_iter / 1e9, "target": "fraction of matmul rate"}


def bench_ntd(S, F, T, ranks, n_iter):
    from tensorly.decomposition import non_negative_tucker
    from tensorly.decomposition._tucker import initialize_tucker
    rng = np.random.default_rng(2)
    X = rng.random((S, F, T), dtype=np.float32)
    core0, factors0 = initialize_tucker(X, list(ranks), range(3), init="random", random_state=1, non_negative=True)
    t_theirs, _ = timed(lambda: non_negative_tucker(X, list(ranks), n_iter_max=n_iter, init="random",
                                                    random_state=1, tol=0), repeat=3)
    with torch.no_grad():
        t_ours, _ = timed(lambda: ntd.ntd(torch.from_numpy(X), ranks, 2.0, n_iter, core=torch.tensor(core0),
                                          factors=[torch.tensor(f) for f in factors0]), repeat=3)
    return {"benchmark": "ntd_iteration", "size": f"{S}x{F}x{T} ranks {ranks}", "ours_s": t_ours / n_iter,
            "peer_s": t_theirs / n_iter, "peer": "tensorly non_negative_tucker", "speedup": t_theirs / t_ours,
            "target": ">= 2"}


def synthetic_cache(folder: Path, hours: float, F: int = 264, track_seconds: float = 600.0) -> Path:
    """Random features in the feature-index format: train tracks totalling ``hours``,
    one validation track."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    n_train = max(1, int(round(hours * 3600 / track_seconds)))
    for i, split in enumerate(["train"] * n_train + ["validation"]):
        frames = int(track_seconds * FRAME_RATE)
        features = np.empty((F, frames), np.float32)
        for start in range(0, frames, 20000):  # write in pieces: this process stays small too
            features[:, start:start + 20000] = rng.random((F, min(20000, frames - start)), dtype=np.float32)
        np.save(folder / f"t{i}.npy", features)
        np.save(folder / f"t{i}.roll.npy", np.zeros((88, frames), np.uint8))
        rows.append({"track_id": f"t{i}", "split": split, "features_path": f"t{i}.npy",
                     "roll_path": f"t{i}.roll.npy", "midi_path": "", "n_frames": frames,
                     "frame_rate": FRAME_RATE, "duration": frames / FRAME_RATE})
        del features
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    (folder / "params.json").write_text(json.dumps({"kind": "cqt", "sample_rate": 22050, "hop_length": 512,
                                                    "bins_per_semitone": 3, "fmin_midi": 21, "n_semitones": 88}))
    return folder / "index.csv"


TRAIN_ONE = """
import json, sys
from lowrank_amt.stages.train import train
spec = json.loads(sys.argv[1]); out = sys.argv[3]
train(spec, sys.argv[2], out + '/model.npz', out + '/loss.csv', out + '/train.json', log=lambda m: None)
"""


def bench_memory(hours_small, hours_large, work: Path, repeats: int = 3):
    rows = []
    caches = {h: synthetic_cache(work / f"cache_{h}h", h) for h in (hours_small, hours_large)}
    for family, form in (("nmf", "online_mu"), ("nmf", "gradient"), ("ntd", "online_mu")):
        spec = {"family": family, "supervision": "unsupervised", "form": form, "rank": 88, "epochs": 1,
                "inner_iterations": 3, "batch_frames": 4096, "device": "cpu", "segment_frames": 32,
                "validation_note_f_every": 0}  # the synthetic caches have no MIDI to score
        peaks = {}
        for hours, index in caches.items():
            runs = []
            for repeat in range(repeats):
                out = work / f"run_{family}_{form}_{hours}_{repeat}"
                out.mkdir(exist_ok=True)
                subprocess.run([sys.executable, "-c", TRAIN_ONE, json.dumps(spec), str(index), str(out)], check=True)
                runs.append(json.loads((out / "train.json").read_text())["peak_rss_mb"])
            peaks[hours] = float(np.median(runs))
        rows.append({"benchmark": f"peak_memory_{family}_{form}", "size": f"{hours_small} h vs {hours_large} h",
                     "ours_s": np.nan, "peer_s": np.nan,
                     "peer": f"{peaks[hours_small]:.0f} MB at {hours_small} h (median of {repeats})",
                     "speedup": peaks[hours_large] / peaks[hours_small],
                     "peak_mb_large": peaks[hours_large], "target": "ratio <= 1.10"})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="markdown file to write (a .csv is written beside it)")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (long: tens of minutes)")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmarks to skip: minibatch fullbatch ntd matmul memory")
    args = parser.parse_args(argv)
    F, K = 264, 88
    N_full = 200_000 if args.full else 20_000
    rows = []
    if "fullbatch" not in args.skip:
        rows.append(bench_full_batch(F, N_full, K, n_iter=10 if args.full else 20))
        write_table(rows, args.out)
    if "matmul" not in args.skip:
        rows.append(bench_matmul_fraction(F, N_full, K, n_iter=5 if args.full else 10))
        write_table(rows, args.out)
    if "minibatch" not in args.skip:
        N = 200_000 if args.full else 30_000
        for inner in (1, 3):
            rows.append(bench_minibatch(F, N, K, batch=4096, epochs=3, inner=inner))
            write_table(rows, args.out)
    if "ntd" not in args.skip:
        rows.append(bench_ntd(400 if args.full else 100, F, 32, (16, K, 8), n_iter=10 if args.full else 20))
        write_table(rows, args.out)
    if "memory" not in args.skip:
        with tempfile.TemporaryDirectory() as work:
            rows.extend(bench_memory(*((1.0, 10.0) if args.full else (0.1, 1.0)), Path(work)))
    write_table(rows, args.out)


if __name__ == "__main__":
    main()
