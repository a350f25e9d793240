"""Optimal-transport data selection: keep the candidates that carry the target distribution's mass cheaply.

RoVRM trains a visual reward model on auxiliary preference data chosen to resemble a small target set.
Cost: C_ij = 1 - cos(candidate i, target j).

Selection (`select_ot`) solves the *capacity* form: candidates hold 1/N each, the targets need k/N in
all (uniform), and a zero-cost reserve absorbs the remaining 1 - k/N. The plan then moves the target
mass from the candidates that match it best, about k of them, spread over every mode of the targets:
the LP relaxation of "the k-subset with the smallest Wasserstein distance to the targets". A
candidate's score ranks by the share of its mass the targets take (lower score = larger share),
ties broken by its mean transported cost. Measured here: the balanced form below, which makes every
candidate ship all its mass, let off-topic candidates score well whenever the topical ones crowded
the same targets (it kept 1% scene text from a 50/50 pool where the centroid rule kept 99.6%).

`ot_scores` without k gives that balanced form (a = 1/N, b = 1/M): score_i = sum_j P_ij C_ij / a_i,
the mean cosine distance of the targets candidate i's mass is sent to.

Solvers:

* ``emd``: exact (``ot.emd``) on the dense N x M cost; memory several times 8*N*M bytes.
* ``sinkhorn``: entropic (``ot.sinkhorn``), same memory; ``reg`` is *relative* to the cost scale
  (the largest entry of C), so one setting behaves alike whatever the embedding geometry. The plain
  scaling iterations are tried first; if they underflow (numerical-error warning, non-finite or empty
  rows) the log-domain variant is used instead.
* ``minibatch``: candidates are shuffled (``seed``) and split into balanced chunks of at most
  ``batch_size``; each chunk is transported exactly to the *full* target set, so memory is
  batch_size x M. Every chunk carries the same total mass to the same targets (with k: its share of
  k), so scores are comparable across chunks.
* ``auto``: ``emd`` when N*M <= ``max_dense_entries``, else ``minibatch``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import ot

SOLVERS = ("auto", "emd", "sinkhorn", "minibatch")
METHODS = ("ot", "random", "centroid", "all")


@dataclass
class OTScores:
    """Per-candidate mean transported cost (lower = closer) and how it was obtained."""

    scores: np.ndarray  # float64 [N]
    potential: np.ndarray | None  # dual potential alpha [N] (emd, sinkhorn); None for minibatch
    solver: str  # the solver actually run ("auto" resolved)
    seconds: float
    total_cost: float  # sum_ij P_ij C_ij (minibatch: mean over chunks)


@dataclass
class Selection:
    """Indices kept from one candidate pool."""

    indices: np.ndarray  # int64, sorted ascending
    method: str
    seconds: float
    scores: np.ndarray | None = None  # per-candidate [N], lower = closer, where the method has them


# ---------------------------------------------------------------- validation


def _as_matrix(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, dim], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_pair(candidates, targets) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_matrix(candidates, "candidates"), _as_matrix(targets, "targets")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"candidates and targets must have the same dim, got {x.shape[1]} and {y.shape[1]}")
    return x, y


def _as_count(value, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _normalised(x: np.ndarray, name: str) -> np.ndarray:
    x = x.astype(np.float64, copy=True)
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name} has {zero.size} zero row(s) (first: row {zero[0]}); cosine cost is undefined")
    x /= norms[:, None]
    return x


def _cost(xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
    cost = xn @ yn.T
    np.subtract(1.0, cost, out=cost)
    np.clip(cost, 0.0, 2.0, out=cost)
    return cost


# ---------------------------------------------------------------- scoring


def cosine_cost(candidates, targets) -> np.ndarray:
    """1 - cosine similarity, float64 [N, M], clipped to [0, 2] against rounding."""
    x, y = _as_pair(candidates, targets)
    return _cost(_normalised(x, "candidates"), _normalised(y, "targets"))


def _emd_iterations(n: int, m: int) -> int:
    # POT's default (1e5) stops short of optimality on a few-thousand-square problem; pivots grow with n + m.
    return max(100_000, 1000 * (n + m))


def _with_reserve(cost: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, cost) of the problem actually solved; with k, a zero-cost reserve column absorbs N - k units.

    Capacity form: each candidate holds 1/N, the targets need k/N in all, the reserve takes the rest
    for free, so the plan moves the target mass from the k-ish candidates that match it best.
    """
    n, m = cost.shape
    if k is None:
        return np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost
    frac = k / n
    b = np.concatenate([np.full(m, frac / m), [max(0.0, 1.0 - frac)]])
    return np.full(n, 1.0 / n), b, np.concatenate([cost, np.zeros((n, 1))], axis=1)


def _plan_scores(plan: np.ndarray, cost: np.ndarray, k: int | None) -> tuple[np.ndarray, float]:
    """Per-candidate score (lower = better) and the transport cost to the real targets."""
    n, m = cost.shape
    real = plan[:, :m]
    moved = real.sum(axis=1)
    spent = np.einsum("ij,ij->i", real, cost)
    if k is None:  # balanced: mean transported cost of each candidate
        return spent * n, float(spent.sum())
    share = np.clip(moved * n, 0.0, 1.0)  # share of its mass a candidate sends to the targets
    mean_cost = np.where(moved > 1e-15, spent / np.maximum(moved, 1e-300), cost.min(axis=1))
    # lexicographic in effect: a whole unit of share outweighs any cost difference (costs are in [0, 2])
    return 3.0 * (1.0 - share) + mean_cost, float(spent.sum() * n / k)


def _emd(cost: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    n, m = cost.shape
    a, b, c = _with_reserve(cost, k)
    plan, log = ot.emd(a, b, c, numItermax=_emd_iterations(n, m), log=True)
    scores, total = _plan_scores(plan, cost, k)
    return scores, np.asarray(log["u"], dtype=np.float64), total


def _sinkhorn(cost_real: np.ndarray, reg: float, max_iter: int, k: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, float]:
    a, b, cost = _with_reserve(cost_real, k)
    scale = float(cost_real.max())
    eps = reg * (scale if scale > 0 else 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.sinkhorn(a, b, cost, eps, method="sinkhorn", numItermax=max_iter, log=True)
    numerical = any("numerical errors" in str(w.message) for w in caught)
    rows = plan.sum(axis=1) if np.all(np.isfinite(plan)) else None
    if numerical or rows is None or np.any(rows <= 0):
        with np.errstate(over="ignore"):  # POT also returns exp(log_u), which may overflow; we use log_u
            plan, log = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=max_iter, log=True)
        potential = eps * np.asarray(log["log_u"], dtype=np.float64)
    else:
        for w in caught:  # pass on the others (e.g. not converged)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with np.errstate(divide="ignore"):
            potential = eps * np.log(np.asarray(log["u"], dtype=np.float64))
    if not np.all(np.isfinite(plan)):
        raise FloatingPointError(f"sinkhorn produced a non-finite plan (reg={reg} relative, {eps:.3g} absolute)")
    scores, total = _plan_scores(plan, cost_real, k)
    return scores, potential, total


def _minibatch(xn: np.ndarray, yn: np.ndarray, batch_size: int, seed: int, k: int | None = None
               ) -> tuple[np.ndarray, float]:
    n = xn.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    # Balanced chunks: a tiny trailing chunk would spread each candidate over too many targets.
    chunks = np.array_split(order, math.ceil(n / batch_size))
    scores = np.empty(n, dtype=np.float64)
    totals = []
    for chunk in chunks:
        chunk_k = None if k is None else max(1, round(k * len(chunk) / n))  # each chunk keeps its share of k
        chunk_scores, _, total = _emd(_cost(xn[chunk], yn), chunk_k)
        scores[chunk] = chunk_scores
        totals.append(total)
    return scores, float(np.mean(totals))


def ot_scores(candidates, targets, solver: str = "auto", reg: float = 0.05,
              max_dense_entries: int = 16_000_000, batch_size: int = 8192, seed: int = 0,
              max_iter: int = 5000, k: int | None = None) -> OTScores:
    """Mean transported cost of each candidate under the OT plan to the targets (see module doc).

    ``reg`` (sinkhorn only) is relative to the largest cost; ``max_dense_entries`` only steers
    ``auto``; ``batch_size`` and ``seed`` only affect ``minibatch``; ``max_iter`` caps sinkhorn.
    With ``k`` the capacity form is solved instead (module doc): the score then ranks candidates by
    the share of their mass the targets take, ties by mean transported cost.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    x, y = _as_pair(candidates, targets)
    if not (isinstance(reg, (int, float, np.floating)) and math.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be a positive finite number, got {reg!r}")
    max_dense_entries = _as_count(max_dense_entries, "max_dense_entries")
    batch_size = _as_count(batch_size, "batch_size")
    max_iter = _as_count(max_iter, "max_iter")
    n, m = x.shape[0], y.shape[0]
    if solver == "auto":
        solver = "emd" if n * m <= max_dense_entries else "minibatch"

    start = time.perf_counter()
    xn, yn = _normalised(x, "candidates"), _normalised(y, "targets")
    potential = None
    if k is not None:
        k = _as_count(k, "k", high=n)
    if solver == "emd":
        scores, potential, total = _emd(_cost(xn, yn), k)
    elif solver == "sinkhorn":
        scores, potential, total = _sinkhorn(_cost(xn, yn), float(reg), max_iter, k)
    else:
        scores, total = _minibatch(xn, yn, batch_size, int(seed), k)
    return OTScores(scores=scores, potential=potential, solver=solver,
                    seconds=time.perf_counter() - start, total_cost=total)


# ---------------------------------------------------------------- selection


def _lowest(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k lowest scores, ties broken by index, returned in ascending index order."""
    return np.sort(np.argsort(scores, kind="stable")[:k]).astype(np.int64)


def select_ot(candidates, targets, k: int, **kw) -> Selection:
    """Keep the k candidates with the lowest OT score; ``kw`` goes to `ot_scores`."""
    start = time.perf_counter()
    x, y = _as_pair(candidates, targets)
    k = _as_count(k, "k", high=x.shape[0])
    result = ot_scores(x, y, k=k, **kw)
    return Selection(indices=_lowest(result.scores, k), method=f"ot:{result.solver}",
                     seconds=time.perf_counter() - start, scores=result.scores)


def select_random(n: int, k: int, seed: int = 0) -> Selection:
    """k of n indices uniformly without replacement: the baseline any selection must beat."""
    start = time.perf_counter()
    n = _as_count(n, "n")
    k = _as_count(k, "k", high=n)
    indices = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)).astype(np.int64)
    return Selection(indices=indices, method="random", seconds=time.perf_counter() - start)


def select_centroid(candidates, targets, k: int) -> Selection:
    """Keep the k candidates most cosine-similar to the mean of the L2-normalised targets.

    Scores are 1 - cosine (lower = closer) like the OT scores. A single centroid favours the
    target's dominant mode, which is what OT selection is meant to improve on.
    """
    start = time.perf_counter()
    x, y = _as_pair(candidates, targets)
    k = _as_count(k, "k", high=x.shape[0])
    centroid = _normalised(y, "targets").mean(axis=0, keepdims=True)
    if not np.any(centroid):
        raise ValueError("the normalised targets average to zero; the centroid direction is undefined")
    scores = _cost(_normalised(x, "candidates"), centroid / np.linalg.norm(centroid))[:, 0]
    return Selection(indices=_lowest(scores, k), method="centroid",
                     seconds=time.perf_counter() - start, scores=scores)


def select_all(n: int) -> Selection:
    """Every index: the no-selection reference."""
    n = _as_count(n, "n")
    return Selection(indices=np.arange(n, dtype=np.int64), method="all", seconds=0.0)


def chained_select(levels: Sequence[tuple[np.ndarray, int]], targets, method: str = "ot", seed: int = 0,
                   **kw) -> list[Selection]:
    """Select level by level outward from the target: each level's kept embeddings are the next target.

    ``levels`` runs from the level nearest the target outward, e.g. ``[(caption_emb, K2), (text_emb, K1)]``.
    For "all", k is still validated but every row is kept. ``kw`` (only with "ot") goes to `ot_scores`;
    level i uses ``seed + i``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if kw and method != "ot":
        raise ValueError(f"keyword arguments {sorted(kw)} only apply to method='ot', not {method!r}")
    if len(levels) == 0:
        raise ValueError("levels must hold at least one (candidate_embeddings, k) pair")
    current = _as_matrix(targets, "targets")
    selections = []
    for i, level in enumerate(levels):
        if not isinstance(level, (tuple, list)) or len(level) != 2:
            raise ValueError(f"levels[{i}] must be a (candidate_embeddings, k) pair")
        candidates = _as_matrix(level[0], f"levels[{i}] embeddings")
        k = _as_count(level[1], f"levels[{i}] k", high=candidates.shape[0])
        if method == "ot":
            chosen = select_ot(candidates, current, k, seed=seed + i, **kw)
        elif method == "centroid":
            chosen = select_centroid(candidates, current, k)
        elif method == "random":
            chosen = select_random(candidates.shape[0], k, seed=seed + i)
        else:
            chosen = select_all(candidates.shape[0])
        selections.append(chosen)
        current = candidates[chosen.indices]
    return selections


def selection_distance(selected, targets, max_points: int = 2000, seed: int = 0) -> float:
    """Exact OT cost (cosine, uniform weights) between a selected set and the targets.

    Each side is subsampled (seeded, without replacement) to ``max_points`` so comparing methods
    stays cheap; compare methods with the same ``max_points`` and ``seed``.
    """
    x, y = _as_pair(selected, targets)
    max_points = _as_count(max_points, "max_points")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_points:
        x = x[np.sort(rng.choice(x.shape[0], size=max_points, replace=False))]
    if y.shape[0] > max_points:
        y = y[np.sort(rng.choice(y.shape[0], size=max_points, replace=False))]
    cost = cosine_cost(x, y)
    n, m = cost.shape
    return float(ot.emd2(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost, numItermax=_emd_iterations(n, m)))
