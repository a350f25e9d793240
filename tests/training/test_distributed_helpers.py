"""Single-process behaviour of pipelines/training/distributed.py (collectives are tested with real ranks
in the multi-process tests)."""
import pytest

from pipelines.training import distributed as d


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (7, 3), (10, 4), (3, 5)])
def test_shards_are_contiguous_balanced_and_cover_everything(n, world):
    items = list(range(n))
    parts = [d.shard(items, r, world) for r in range(world)]
    assert [x for p in parts for x in p] == items
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_one_process_is_the_default_and_collectives_are_identity(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert d.ranks() == d.Ranks(0, 1, 0) and d.ranks().is_main
    assert d.init() == d.Ranks(0, 1, 0)
    assert d.gather([3, 1]) == [3, 1]
    assert d.all_reduce_mean({"b": 2, "a": 1}) == {"a": 1.0, "b": 2.0}
    assert d.broadcast({"x": 1}) == {"x": 1}


def test_bad_rank_environment_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        d.ranks()
