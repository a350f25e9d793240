"""LRHP selection rules and the margin-aware BT loss (pipelines/lrhp)."""
import numpy as np
import pytest
import torch

from pipelines.lrhp.reward_training import gold_order_credit, margin_bt_loss
from pipelines.lrhp.selection import random_k, similarity_scores, top_k


def test_top_k_returns_exactly_k_distinct_highest_with_index_ties():
    """Fails if selection returns duplicates, the wrong count, or breaks ties other than by lower index."""
    scores = [0.5, 0.9, 0.9, 0.1, 0.7, 0.9]
    assert top_k(scores, 4) == [1, 2, 5, 4]
    for k in range(1, 7):
        picked = top_k(scores, k)
        assert len(picked) == len(set(picked)) == k
    with pytest.raises(ValueError, match="K=7 of 6"):
        top_k(scores, 7)


def test_random_k_is_seeded_distinct_and_exact():
    """Fails if random selection repeats an index, returns another count or changes with the same seed."""
    a, b = random_k(100, 30, seed=4), random_k(100, 30, seed=4)
    assert a == b and len(set(a)) == 30 and all(0 <= i < 100 for i in a)
    assert random_k(100, 30, seed=5) != a
    with pytest.raises(ValueError):
        random_k(5, 0, seed=0)


def test_similarity_scores_prefer_pool_items_near_the_target():
    """Fails if the kNN score does not rank the pool item nearest the target set first, or ignores knn."""
    target = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    pool = torch.tensor([[0.0, 1.0], [1.0, 0.05], [-1.0, 0.0]])
    s = similarity_scores(pool, target, knn=2)
    assert top_k(s, 1) == [1] and s[2] < s[0] < s[1]
    one = similarity_scores(pool, target, knn=1)
    assert one[1] == pytest.approx(float(torch.nn.functional.normalize(pool[1:2], dim=-1)[0] @ target[0]))


def test_gold_order_credit_skips_ties_and_scores_agreement():
    """Fails if tied gold pairs are counted or a reversed score gap earns credit."""
    recs = [{"gold_chosen": 1.0, "gold_rejected": 0.0}, {"gold_chosen": 0.0, "gold_rejected": 1.0},
            {"gold_chosen": 0.5, "gold_rejected": 0.5}, {"gold_chosen": 1.0, "gold_rejected": 0.0}]
    credit = gold_order_credit(np.array([0.3, 0.3, 1.0, 0.0]), recs)
    assert credit.tolist() == [1.0, 0.0, 0.5]


class _Fixed(torch.nn.Module):
    def __init__(self, r):
        super().__init__()
        self.r = r

    def forward(self, input_ids, attention_mask=None):
        return self.r


def test_margin_bt_loss_shifts_by_the_margin():
    """Fails if the margin-aware loss is not -log sigmoid(r_w - r_l - m) (a zero margin is the plain BT loss)."""
    r = torch.tensor([2.0, 0.5, 1.0, 1.0])  # chosen rows first, then rejected
    batch = {"input_ids": torch.zeros(4, 1, dtype=torch.long), "attention_mask": torch.ones(4, 1),
             "margin": torch.tensor([0.5, -1.0])}
    loss, _ = margin_bt_loss(_Fixed(r), batch)
    want = -(torch.nn.functional.logsigmoid(torch.tensor(1.0 - 0.5)) +
             torch.nn.functional.logsigmoid(torch.tensor(-0.5 + 1.0))) / 2
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
