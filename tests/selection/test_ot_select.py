"""OT data selection on synthetic clustered embeddings where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from pipelines.selection import (
    chained_select,
    cosine_cost,
    ot_scores,
    select_all,
    select_centroid,
    select_ot,
    select_random,
    selection_distance,
)

DIM = 16


def _centers(seed: int = 0, count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 4.0 * rng.standard_normal((count, DIM)) / np.sqrt(DIM)


def _sample(centers: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.arange(n) % len(centers)
    return centers[labels] + 0.35 * rng.standard_normal((n, centers.shape[1]))


@pytest.fixture(scope="module")
def pool():
    """Targets from clusters 0-1; candidates: first half from clusters 0-1, second half from 2-5."""
    rng = np.random.default_rng(1)
    centers = _centers()
    targets = _sample(centers[:2], 120, rng)
    on = _sample(centers[:2], 200, rng)
    off = _sample(centers[2:], 200, rng)
    return np.vstack([on, off]), targets


def _on_target_fraction(indices: np.ndarray, half: int = 200) -> float:
    return float(np.mean(indices < half))


def test_cosine_cost_known_values():
    x = np.array([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    cost = cosine_cost(x, np.array([[5.0, 0.0]]))
    assert cost.dtype == np.float64 and cost.shape == (3, 1)
    np.testing.assert_allclose(cost[:, 0], [0.0, 1.0, 2.0], atol=1e-12)
    assert cosine_cost(x, x).min() >= 0.0 and cosine_cost(x, x).max() <= 2.0


@pytest.mark.parametrize("solver", ["emd", "minibatch", "sinkhorn"])
def test_ot_recovers_the_on_target_half(pool, solver):
    candidates, targets = pool
    chosen = select_ot(candidates, targets, 200, solver=solver, batch_size=150)
    assert chosen.method == f"ot:{solver}"
    assert chosen.indices.dtype == np.int64 and np.all(np.diff(chosen.indices) > 0)
    assert chosen.scores.shape == (400,)
    assert _on_target_fraction(chosen.indices) >= 0.9


def test_centroid_recovers_and_random_does_not(pool):
    candidates, targets = pool
    assert _on_target_fraction(select_centroid(candidates, targets, 200).indices) >= 0.9
    assert 0.35 <= _on_target_fraction(select_random(400, 200, seed=0).indices) <= 0.65


def test_solvers_rank_correlate(pool):
    candidates, targets = pool
    emd = ot_scores(candidates, targets, solver="emd")
    mini = ot_scores(candidates, targets, solver="minibatch", batch_size=150)
    sink = ot_scores(candidates, targets, solver="sinkhorn", reg=0.01)
    assert spearmanr(emd.scores, mini.scores)[0] > 0.85
    assert spearmanr(emd.scores, sink.scores)[0] > 0.85
    # total cost = sum_i a_i score_i, and an exact plan is at least as cheap as a minibatch one
    assert emd.total_cost == pytest.approx(emd.scores.mean(), rel=1e-9)
    assert emd.total_cost <= mini.total_cost + 1e-9
    assert emd.potential is not None and emd.potential.shape == (400,)
    assert mini.potential is None


def test_auto_switches_on_the_dense_limit(pool):
    candidates, targets = pool
    assert ot_scores(candidates, targets).solver == "emd"
    small = ot_scores(candidates, targets, max_dense_entries=1000, batch_size=150)
    assert small.solver == "minibatch"


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_falls_back_when_plain_scaling_underflows(monkeypatch):
    import ot

    methods = []
    real = ot.sinkhorn

    def spy(*args, method="sinkhorn", **kwargs):
        methods.append(method)
        return real(*args, method=method, **kwargs)

    monkeypatch.setattr(ot, "sinkhorn", spy)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, DIM)), rng.standard_normal((40, DIM)) + 0.5
    sink = ot_scores(x, y, solver="sinkhorn", reg=1e-4, max_iter=300)
    assert methods == ["sinkhorn", "sinkhorn_log"]
    assert np.all(np.isfinite(sink.scores)) and np.all(np.isfinite(sink.potential))
    assert spearmanr(ot_scores(x, y, solver="emd").scores, sink.scores)[0] > 0.8


def test_chaining_passes_the_selection_on(pool):
    candidates, targets = pool
    rng = np.random.default_rng(5)
    outer = _sample(_centers(), 300, rng)
    first, second = chained_select([(candidates, 100), (outer, 60)], targets)
    assert first.indices.size == 100 and second.indices.size == 60
    np.testing.assert_array_equal(first.indices, select_ot(candidates, targets, 100).indices)
    again = select_ot(outer, candidates[first.indices], 60, seed=1)
    np.testing.assert_array_equal(second.indices, again.indices)
    # outer rows follow the selected (on-target) captions: clusters 0-1 are labels i % 6 in {0, 1}
    assert np.mean(second.indices % 6 < 2) >= 0.9


@pytest.mark.parametrize("method", ["random", "centroid", "all"])
def test_chaining_baselines(pool, method):
    candidates, targets = pool
    selections = chained_select([(candidates, 100), (candidates, 50)], targets, method=method, seed=2)
    expected = [400, 400] if method == "all" else [100, 50]
    assert [s.indices.size for s in selections] == expected
    assert all(s.method == method for s in selections)


def test_selection_distance_prefers_ot(pool):
    candidates, targets = pool
    ot_sel = select_ot(candidates, targets, 100)
    rand_sel = select_random(400, 100, seed=0)
    ot_dist = selection_distance(candidates[ot_sel.indices], targets)
    assert ot_dist < selection_distance(candidates[rand_sel.indices], targets)
    assert selection_distance(candidates, targets, max_points=50, seed=1) == selection_distance(
        candidates, targets, max_points=50, seed=1)


def test_determinism(pool):
    candidates, targets = pool
    a = ot_scores(candidates, targets, solver="minibatch", batch_size=150, seed=4)
    b = ot_scores(candidates, targets, solver="minibatch", batch_size=150, seed=4)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(select_random(50, 10, seed=7).indices, select_random(50, 10, seed=7).indices)
    np.testing.assert_array_equal(select_ot(candidates, targets, 30, solver="sinkhorn").indices,
                                  select_ot(candidates, targets, 30, solver="sinkhorn").indices)


def test_ties_break_by_index():
    x = np.ones((10, 3))
    np.testing.assert_array_equal(select_centroid(x, np.ones((2, 3)), 4).indices, [0, 1, 2, 3])
    np.testing.assert_array_equal(select_all(5).indices, np.arange(5))


@pytest.mark.parametrize("call, message", [
    (lambda x, y: select_ot(x[:, 0], y, 3), "2-D"),
    (lambda x, y: select_ot(x[:, :3], y, 3), "same dim"),
    (lambda x, y: select_ot(np.where(np.arange(4)[:, None] == 1, np.nan, x), y, 3), "NaN"),
    (lambda x, y: cosine_cost(np.zeros_like(x), y), "zero row"),
    (lambda x, y: select_ot(x, y, 0), "k must be between 1 and 4"),
    (lambda x, y: select_ot(x, y, 5), "k must be between 1 and 4"),
    (lambda x, y: select_ot(x, y, 2.0), "k must be an integer"),
    (lambda x, y: ot_scores(x, y, solver="exact"), "unknown solver"),
    (lambda x, y: ot_scores(x, y, solver="sinkhorn", reg=0.0), "reg must be"),
    (lambda x, y: ot_scores(x, y, batch_size=0), "batch_size"),
    (lambda x, y: chained_select([(x, 2)], y, method="knn"), "unknown method"),
    (lambda x, y: chained_select([], y), "at least one"),
    (lambda x, y: chained_select([(x, 2)], y, method="random", solver="emd"), "only apply to method='ot'"),
    (lambda x, y: select_random(3, 4), "k must be between 1 and 3"),
    (lambda x, y: selection_distance(x, y, max_points=0), "max_points"),
])
def test_bad_inputs(call, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        call(rng.standard_normal((4, 5)), rng.standard_normal((3, 5)))


def test_capacity_selection_covers_every_target_mode_where_balanced_scoring_and_centroid_do_not():
    """Targets split evenly over two modes; candidates crowd mode A (900), mode B is rare (30), plus 500
    off-target. The k-capacity plan must take all of mode B; a centroid rule and the balanced
    (every-candidate-ships-its-mass) score, measured to favour the crowded mode, do not."""
    rng = np.random.default_rng(7)
    centers = _centers(3, count=4)
    targets = np.concatenate([_sample(centers[:1], 50, rng), _sample(centers[1:2], 50, rng)])
    mode_a, mode_b = _sample(centers[:1], 900, rng), _sample(centers[1:2], 30, rng)
    off = _sample(centers[2:], 500, rng)
    candidates = np.concatenate([mode_a, mode_b, off])
    is_b = np.zeros(len(candidates), dtype=bool)
    is_b[900:930] = True
    k = 100
    capacity = select_ot(candidates, targets, k)
    balanced = np.sort(np.argsort(ot_scores(candidates, targets).scores, kind="stable")[:k])
    centroid = select_centroid(candidates, targets, k)
    # mode B's 50 target units find only 30 B candidates: the other 20 come from the nearest others
    assert is_b[capacity.indices].sum() == 30 and (capacity.indices >= 930).sum() <= 20
    assert is_b[balanced].sum() < 30 and is_b[centroid.indices].sum() < 30
    dist = {name: selection_distance(candidates[idx], targets) for name, idx in
            (("capacity", capacity.indices), ("balanced", balanced), ("centroid", centroid.indices))}
    assert dist["capacity"] < min(dist["balanced"], dist["centroid"])
