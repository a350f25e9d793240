"""Data selection for reward-model training: keep auxiliary samples close in distribution to a target set.

`ot_select` scores candidates by their mean optimal-transport cost to the targets (exact, entropic or
minibatch), with random, centroid and keep-all baselines and backward chaining across data levels.
"""

from __future__ import annotations

from pipelines.selection.ot_select import (
    METHODS,
    SOLVERS,
    OTScores,
    Selection,
    chained_select,
    cosine_cost,
    ot_scores,
    select_all,
    select_centroid,
    select_ot,
    select_random,
    selection_distance,
)

__all__ = [
    "METHODS",
    "SOLVERS",
    "OTScores",
    "Selection",
    "chained_select",
    "cosine_cost",
    "ot_scores",
    "select_all",
    "select_centroid",
    "select_ot",
    "select_random",
    "selection_distance",
]
