"""Nonnegative Tucker decomposition (NTD) of a spectrogram cut into segments.

The tensor. A track's features (F bins x N frames) are cut into S consecutive segments
of T frames (the last one padded), giving the third-order tensor

    X[s, f, t]  (segments x frequency bins x frames within a segment),  S x F x T.

The model. X is approximated by a nonnegative Tucker decomposition

    X ~ G x_0 Q x_1 W x_2 P,   i.e.  X[s,f,t] ~ sum_{l,k,j} G[l,k,j] Q[s,l] W[f,k] P[t,j]

with W (F x K) the **note dictionary** (one spectral template per column, as in NMF),
P (T x Kt) temporal patterns within a segment (attacks, decays, rhythmic positions),
Q (S x Ks) how much each segment uses each pattern of the core, and the core G
(Ks x K x Kt) linking them. Equivalently X[s] ~ W @ A[s] with the activations

    A[s, k, t] = sum_{l,j} Q[s,l] G[l,k,j] P[t,j]      (S x K x T),

so NTD is NMF on every segment whose activation matrices are constrained to a
low-rank (Ks, K, Kt) Tucker structure shared over the segments.

Why it fits transcription. The dictionary W plays exactly the role of NMF's templates
(a pitch per column, scored through A), while the structure on A encodes what music
repeats: the same temporal envelopes (P) and the same combinations of notes (G, Q)
recur across segments (Marmoret, Cohen & Bimbot, 2020, who factor bars; here segments
of fixed length, which a frame-level transcriber needs). W is learned from many pieces
and kept; G, P and Q describe one piece (or one mini-batch of segments) and are
re-estimated with W fixed when a track is transcribed, giving K x N activations.

Semi-supervised NTD. A piano roll cannot mask A: each entry is a sum of products of
G, Q and P, and zeroing some entries of a factor zeroes whole rows of A, not the
entries outside the roll. Instead the roll M (K x S x T, 1 where the key sounds)
penalizes the reconstruction that keys outside their roll contribute:

    D_beta(X | X_hat) + ROLL_PENALTY * sum_{k,s,t} w_k (1 - M[k,s,t]) A[k,s,t],

w_k the sum of template k (so the penalty is the reconstructed energy outside the
roll, unchanged when a template is scaled up and its activations down). The penalty
is linear in each of Q, P, G and W with nonnegative coefficients, so its gradient joins
each factor's MU denominator (as an l1 penalty does) and pushes those activations
towards zero (W's too: without it, W would grow and the activations shrink unboundedly).

Updates. X_hat is linear in each of Q, W, P and G with nonnegative coefficients, so the
beta-divergence MU of core.py applies to each in turn and never increases the
divergence. Each iteration of the shared full-batch loop updates Q, P and G, then W
(tensorly updates W between Q and P; from the same start both reach the same fit, within
1 % in tests/test_ntd.py). For beta = 2 the updates use Gram matrices (as tensorly's
``non_negative_tucker``, Kim & Choi 2007) and never form X_hat, nor does the loss;
other betas form X_hat once per factor. The data are held as the F x (S T)
matrix of their frames and A as K x (S T), so every contraction over the F bins (the
costly ones) is a single matrix product; the small ones over segments and patterns use
``torch.einsum``. Tensorly's mode products (and its global backend switch) are not needed.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..errors import LowrankAmtError
from .core import EPS, beta_divergence, mu_step, positive_rand, ratio_terms

#: Weight of the roll penalty of semi-supervised NTD (see the module docstring): outside
#: its key's roll, an activation costs this many times the energy it reconstructs. On
#: planted data (tests/test_ntd.py), 1 leaves 13 % of the activation mass outside the
#: rolls and learns templates of median correlation 0.95 with the true ones; 10 leaves
#: 3 % but fits worse (0.87): the Tucker structure cannot follow a roll exactly.
ROLL_PENALTY = 1.0


def segment(features: torch.Tensor, segment_frames: int) -> torch.Tensor:
    """F x N features -> S x F x T segments; the last segment is padded with eps."""
    F, N = features.shape
    S = max(1, -(-N // segment_frames))
    padded = torch.full((F, S * segment_frames), EPS, dtype=features.dtype, device=features.device)
    padded[:, :N] = features
    return padded.reshape(F, S, segment_frames).permute(1, 0, 2).contiguous()


def as_matrix(X: torch.Tensor) -> torch.Tensor:
    """S x F x T segments -> the F x (S T) matrix of their frames, segment after segment."""
    S, F, T = X.shape
    return X.permute(1, 0, 2).reshape(F, S * T)


def activation_tensor(G, Q, P) -> torch.Tensor:
    """A[s,k,t] = sum_{l,j} Q[s,l] G[l,k,j] P[t,j]  (S x K x T)."""
    GP = torch.einsum("lkj,tj->lkt", G, P)
    return (Q @ GP.reshape(G.shape[0], -1)).reshape(Q.shape[0], G.shape[1], P.shape[0])


def activation_matrix(G, Q, P) -> torch.Tensor:
    """A laid out as K x (S T), the columns matching ``as_matrix``'s: then W @ A is
    one matrix product, the form every contraction with F below takes."""
    return activation_tensor(G, Q, P).permute(1, 0, 2).reshape(G.shape[1], -1)


def reconstruct(W, activations) -> torch.Tensor:
    """X_hat (S x F x T)."""
    A = activation_matrix(activations["G"], activations["Q"], activations["P"])
    S, T = activations["Q"].shape[0], activations["P"].shape[0]
    return (W @ A).reshape(W.shape[0], S, T).permute(1, 0, 2)


def _projected_terms(Xm, W, A, beta):
    """(W^T (X * X_hat^(beta-2)), W^T X_hat^(beta-1)), both K x (S T), for beta != 2:
    every factor's MU terms other than W's are contractions of these."""
    num_term, den_term = ratio_terms(Xm, (W @ A).clamp_min_(EPS), beta)
    if den_term is None:  # beta = 1: W^T times ones, the same column for every frame
        return W.T @ num_term, W.sum(dim=0)[:, None].expand_as(A)
    return W.T @ num_term, W.T @ den_term


def _contract(name, M, G, Q, P):
    """The MU term of factor ``name`` (Q, P or G) from a projected term M (K x (S T)):
    sum over every other index of M[k,s,t] times the factors that are not ``name``."""
    K, S, T = M.shape[0], Q.shape[0], P.shape[0]
    M = M.reshape(K, S, T)
    if name == "Q":  # sum_{k,t} M[k,s,t] (G x P)[l,k,t]
        GP = torch.einsum("lkj,tj->lkt", G, P).reshape(G.shape[0], K * T)
        return M.permute(1, 0, 2).reshape(S, K * T) @ GP.T
    if name == "P":  # sum_{k,s} M[k,s,t] (Q x G)[k,s,j]
        QG = torch.einsum("sl,lkj->ksj", Q, G).reshape(K * S, -1)
        return M.reshape(K * S, T).T @ QG
    MP = (M.reshape(K * S, T) @ P).reshape(K, S, -1)  # G: sum_{s,t} Q[s,l] M[k,s,t] P[t,j]
    return (Q.T @ MP.permute(1, 0, 2).reshape(S, -1)).reshape(G.shape)


def _mode_dot(core, M, mode):
    """core with its axis ``mode`` multiplied by the square matrix M (symmetric here)."""
    return torch.movedim(torch.tensordot(core, M, dims=([mode], [1])), -1, mode)


def _gram_terms(name, X, W, G, Q, P, WtX):
    """The beta = 2 MU terms by the Tucker Gram identities (Kim & Choi 2007): every
    denominator is a product of core-sized tensors and the factors' Gram matrices, so
    X_hat is never formed; numerators are contractions of W^T X (``WtX``, K x (S T)),
    and W's of X with Q and P first (the cheaper order)."""
    QtQ, WtW, PtP = Q.T @ Q, W.T @ W, P.T @ P
    if name == "G":
        return _contract("G", WtX, G, Q, P), _mode_dot(_mode_dot(_mode_dot(G, QtQ, 0), WtW, 1), PtP, 2)
    if name == "Q":
        C = torch.einsum("akj,lkj->al", _mode_dot(_mode_dot(G, WtW, 1), PtP, 2), G)
        return _contract("Q", WtX, G, Q, P), Q @ C
    if name == "P":
        C = torch.einsum("lkb,lkj->bj", _mode_dot(_mode_dot(G, QtQ, 0), WtW, 1), G)
        return _contract("P", WtX, G, Q, P), P @ C
    S, F, T = X.shape  # W: sum_{s,t,l,j} X[s,f,t] Q[s,l] P[t,j] G[l,k,j]
    XQP = ((Q.T @ X.reshape(S, F * T)).reshape(-1, T) @ P).reshape(Q.shape[1], F, P.shape[1])
    C = torch.einsum("lbj,lkj->bk", _mode_dot(_mode_dot(G, QtQ, 0), PtP, 2), G)
    return torch.einsum("lfj,lkj->fk", XQP, G), W @ C


def _factor_terms(name, X, W, factors, beta):
    """(numerator, denominator) of the MU step on one factor, at the current values."""
    G, Q, P = factors["G"], factors["Q"], factors["P"]
    if beta == 2:
        return _gram_terms(name, X, W, G, Q, P, None if name == "W" else _TERMS.projection(X, W))
    Xm = _TERMS.matrix(X)
    A = activation_matrix(G, Q, P)
    if name == "W":
        num_term, den_term = ratio_terms(Xm, (W @ A).clamp_min_(EPS), beta)
        if den_term is None:
            return num_term @ A.T, A.sum(dim=1)[None, :].expand_as(W)
        return num_term @ A.T, den_term @ A.T
    M_num, M_den = _projected_terms(Xm, W, A, beta)
    return _contract(name, M_num, G, Q, P), _contract(name, M_den, G, Q, P)


class _DataTerms:
    """The data-side terms of the last (X, W) seen: the frames matrix ``as_matrix(X)``,
    its squared norm and W^T X. A full-batch iteration asks for them three times (the
    loss, the activation step, the dictionary step) with the same X and, twice, the same W:
    one copy of the data and one product W^T X per iteration instead of three. Identity,
    not value, decides a hit (MU makes a new W each step); one slot, so no memory builds up
    over mini-batches."""

    def __init__(self):
        self.X = self.W = None

    def matrix(self, X):
        if self.X is None or self.X() is not X:
            self.X, self.Xm, self.norm, self.W = weakref.ref(X), as_matrix(X), None, None
        return self.Xm

    def squared_norm(self, X):
        Xm = self.matrix(X)
        if self.norm is None:
            self.norm = float(torch.dot(Xm.reshape(-1), Xm.reshape(-1)))
        return self.norm

    def projection(self, X, W):
        Xm = self.matrix(X)
        if self.W is None or self.W() is not W:
            self.W, self.WtX = weakref.ref(W), W.T @ Xm
        return self.WtX


_TERMS = _DataTerms()


def loss(X, W, activations, beta: float):
    """(beta-divergence of X from its reconstruction, None): at beta = 2 by the Gram
    identities, without forming X_hat (so no reconstruction is returned for reuse)."""
    _check(X, W)
    G, Q, P = activations["G"], activations["Q"], activations["P"]
    if beta != 2:
        return beta_divergence(_TERMS.matrix(X), W @ activation_matrix(G, Q, P), beta), None
    # 0.5 ||X - X_hat||^2 = 0.5 (||X||^2 - 2 <X, X_hat> + ||X_hat||^2), the last two
    # as <G, .> with G's own MU terms: no X_hat formed
    projection, gram = _gram_terms("G", X, W, G, Q, P, _TERMS.projection(X, W))
    value = _TERMS.squared_norm(X) - 2 * float((G * projection).sum()) + float((G * gram).sum())
    return 0.5 * max(value, 0.0), None


def _check(X, W):
    if X.ndim != 3 or W.ndim != 2 or W.shape[0] != X.shape[1]:
        raise LowrankAmtError(f"NTD needs segments x bins x frames data and a bins x K dictionary; "
                              f"got {tuple(X.shape)} and {tuple(W.shape)}")


def ntd(X: torch.Tensor, ranks: tuple[int, int, int], beta: float = 2.0, n_iter: int = 100, *,
        core=None, factors=None, update_dictionary: bool = True, l1: float = 0.0, tol: float = 0.0,
        seed: int = 0):
    """Nonnegative Tucker decomposition of X (S x F x T) with core ranks (Ks, K, Kt): a
    thin wrapper of the shared full-batch loop (``training.fit_full_batch``).

    ``core`` (Ks x K x Kt) and ``factors`` [Q, W, P] give the start (random otherwise).
    Each iteration updates Q, P and G (``activation_step``), then W unless
    ``update_dictionary`` is False; ``l1`` penalizes the core. Returns (core, [Q, W, P],
    losses), losses[0] being the beta-divergence at the start.
    """
    if torch.any(X < 0):
        raise LowrankAmtError("NTD input has negative entries")
    if factors is None or core is None:
        gen = torch.Generator().manual_seed(seed)
        W0 = positive_rand((X.shape[1], ranks[1]), 1.0, gen, X)
        start = init_activations(X, W0, gen, time_rank=ranks[2], segment_rank=ranks[0])
        core, factors = start["G"], [start["Q"], W0, start["P"]]
    from . import ntd as numerics  # this module's functions are the family's numerics
    from .training import fit_full_batch
    W, state, losses = fit_full_batch(numerics, X, factors[1], beta=beta, n_iter=n_iter, tol=tol, l1=l1,
                                      update_dictionary=update_dictionary,
                                      activations={"G": core, "Q": factors[0], "P": factors[2]})
    return state["G"], [state["Q"], W, state["P"]], losses


# --- family interface (see training.py): dictionary W, activations {"G", "Q", "P"} ---

def init_dictionary(n_bins: int, rank: int, scale: float, gen: torch.Generator,
                    like: torch.Tensor, **_) -> torch.Tensor:
    return positive_rand((n_bins, rank), scale, gen, like)


def init_activations(X, W, gen, mask=None, time_rank: int = 8, segment_rank: int = 16, **_) -> dict:
    """Random Q, P, G (random: constant ones would stay equal under MU), G rescaled so
    that the reconstruction has X's mean. A ``mask`` acts through the penalty of the
    activation steps, not the start."""
    S, _, T = X.shape
    K = W.shape[1]
    factors = {"Q": positive_rand((S, segment_rank), 1.0, gen, X),
               "P": positive_rand((T, time_rank), 1.0, gen, X),
               "G": positive_rand((segment_rank, K, time_rank), 1.0, gen, X)}
    level = X.mean() / reconstruct(W, factors).mean().clamp_min(EPS)
    factors["G"] = factors["G"] * level
    return factors


def activation_step(X, W, activations, beta: float, l1: float = 0.0, mask=None, V_hat=None) -> dict:
    """One MU step on each of Q, P and G (W fixed); ``l1`` penalizes the core; a
    ``mask`` (S x K x T, the roll of each template's key) adds the roll penalty."""
    _check(X, W)
    state = dict(activations)
    outside = None
    if mask is not None:  # w_k (1 - M), laid out as A: K x (S T)
        outside = ROLL_PENALTY * W.sum(dim=0)[:, None] * (1 - mask.permute(1, 0, 2).reshape(W.shape[1], -1))
    for name in ("Q", "P", "G"):
        numerator, denominator = _factor_terms(name, X, W, state, beta)
        if outside is not None:
            denominator = denominator + _contract(name, outside, state["G"], state["Q"], state["P"])
        state[name] = mu_step(state[name], numerator, denominator, beta, l1 if name == "G" else 0.0)
    return state


def dictionary_terms(X, W, activations, beta: float, V_hat=None, mask=None):
    """W's MU terms; with a ``mask``, plus the roll penalty's gradient (the activation
    mass of each template outside its roll, the same for every bin)."""
    _check(X, W)
    numerator, denominator = _factor_terms("W", X, W, activations, beta)
    if mask is None:
        return numerator, denominator
    A = activation_tensor(activations["G"], activations["Q"], activations["P"])
    return numerator, denominator + ROLL_PENALTY * (A * (1 - mask)).sum(dim=(0, 2))[None, :]


def key_activations(activations) -> torch.Tensor:
    """The activation tensor laid out over frames: K x (S * T)."""
    return activation_matrix(activations["G"], activations["Q"], activations["P"])


def spectral_templates(W: np.ndarray) -> np.ndarray:
    return W
