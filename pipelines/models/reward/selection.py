"""Best-of-n selection from a pairwise comparator, independent of any model.

A comparator takes a list of ``(group, i, j)`` triples and returns, for each, the
probability that candidate ``i`` of ``group`` beats candidate ``j``. Keeping the logic here
lets GRAM batch all comparisons of a round and lets tests plug in a mock.
"""

from __future__ import annotations

from typing import Callable, Sequence

Comparator = Callable[[list], Sequence[float]]


def knockout_many(sizes: Sequence[int], compare: Comparator) -> list[int]:
    """Winner index per group by knockout: the champion meets each new candidate in turn.

    Round ``r`` compares champion vs candidate ``r`` for every group that has one, so a group
    of n candidates costs n - 1 comparisons. Ties (p == 0.5) keep the champion.
    """
    if any(n < 1 for n in sizes):
        raise ValueError("every candidate list needs at least one candidate")
    champ = [0] * len(sizes)
    for r in range(1, max(sizes, default=1)):
        groups = [g for g, n in enumerate(sizes) if n > r]
        probs = compare([(g, champ[g], r) for g in groups])
        for g, p in zip(groups, probs):
            if float(p) < 0.5:
                champ[g] = r
    return champ


def pairwise_scores(n: int, compare: Comparator) -> list[float]:
    """Soft Borda score: candidate i's summed win probability over all others."""
    pairs = [(0, i, j) for i in range(n) for j in range(i + 1, n)]
    scores = [0.0] * n
    for (_, i, j), p in zip(pairs, compare(pairs) if pairs else []):
        scores[i] += float(p)
        scores[j] += 1.0 - float(p)
    return scores


def rank_by_scores(scores: Sequence[float]) -> list[int]:
    """Indices from best to worst; equal scores keep the original order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
