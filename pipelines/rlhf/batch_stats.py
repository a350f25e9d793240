"""Statistics of a PPO batch that is split across ranks, computed over the whole (global) batch.

Under several ranks each rank holds an equal shard of the rollout batch. The reward normaliser,
the advantage whitening and the logged means must still describe the global batch, or the
update would depend on how the batch was cut. With one process every function here returns
exactly what the single-process code computes (same operations, same dtypes), so one-process
results are bit-identical.
"""
from __future__ import annotations

from typing import Mapping

import torch

from pipelines.rlhf.rewards import RewardNormalizer
from pipelines.training.distributed import all_reduce_mean, all_reduce_sum, gather, ranks


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def global_masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`masked_whiten` with the mean and variance of the masked entries over every rank's shard."""
    if ranks().world == 1:
        return masked_whiten(x, mask, eps)
    sums = all_reduce_sum({"sum": float((x * mask).sum()), "count": float(mask.sum())})
    count = max(sums["count"], 1.0)
    mean = sums["sum"] / count
    var = all_reduce_sum({"sq": float((((x - mean) ** 2) * mask).sum())})["sq"] / count
    return (x - mean) * torch.rsqrt(torch.tensor(var + eps, dtype=x.dtype)) * mask


def global_normalizer(raw: torch.Tensor, normalize: bool) -> RewardNormalizer:
    """The reward normaliser fitted on the first batch's scores of every rank (rank order)."""
    if not normalize:
        return RewardNormalizer()
    if ranks().world == 1:
        return RewardNormalizer.fit(raw)
    return RewardNormalizer.fit(torch.tensor(gather(raw.float().tolist()), dtype=torch.float32))


def mean_over_ranks(row: Mapping[str, float], keys) -> dict:
    """`row` with the values of `keys` replaced by their mean over ranks (equal shards: the global mean)."""
    if ranks().world == 1:
        return dict(row)
    means = all_reduce_mean({k: row[k] for k in keys})
    return {k: means.get(k, v) for k, v in row.items()}


def sum_over_ranks(value: int) -> int:
    """An integer count summed over ranks."""
    if ranks().world == 1:
        return value
    return int(round(all_reduce_sum({"n": float(value)})["n"]))
