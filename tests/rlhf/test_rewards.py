import pytest
import torch

from pipelines.models.reward.scorers import BTScorer, GramScorer
from pipelines.rlhf.rewards import ReferenceResponses


class FakeGram:
    def prob_first_better(self, prompts, ys1, ys2, batch_size=32):
        return {"p": torch.tensor([0.9 if len(a) > len(b) else 0.1 for a, b in zip(ys1, ys2)])}


class FakeBT:
    def rewards(self, prompts, texts, batch_size=32):
        return torch.tensor([float(len(t)) for t in texts])


def test_references_are_generated_once_per_prompt():
    calls = []
    refs = ReferenceResponses(lambda ps: calls.append(list(ps)) or [p.upper() for p in ps])
    scorer = GramScorer(FakeGram(), references=refs)
    s = scorer.score(["ab", "cd", "ab"], ["long answer", "x", "yyy"])
    assert calls == [["ab", "cd"]] and refs == {"ab": "AB", "cd": "CD"}
    assert torch.allclose(s, torch.tensor([0.9, 0.1, 0.9]))
    scorer.score(["cd", "ef"], ["a", "b"])
    assert calls == [["ab", "cd"], ["ef"]]


def test_fixed_references_must_cover_every_prompt():
    with pytest.raises(KeyError, match="no GRAM reference"):
        GramScorer(FakeGram(), references={"a": "x"}).score(["a", "b"], ["y", "z"])


def test_gram_score_needs_references():
    """Fails if GRAM scored without references silently (e.g. against empty strings)."""
    with pytest.raises(ValueError, match="reference"):
        GramScorer(FakeGram()).score(["a"], ["y"])


def test_bt_scores_are_the_scalar_rewards():
    assert BTScorer(FakeBT()).score(["p", "q"], ["abc", ""]).tolist() == [3.0, 0.0]
