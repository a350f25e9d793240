"""Feeding speech-translation models to the shared training loop.

The loop draws `batch_size` items per micro-batch from a seeded permutation of its dataset. For
speech, random batches waste much of their compute on padding, so here the dataset the loop sees
is a list of *length buckets*: utterances sorted by frame count (with a seeded jitter, so equal
lengths mix differently per seed) and cut into groups of `bucket_size` (params `st.<kind>.bucket_size`).
The loop's `batch_size` (`st.<kind>.train.batch_size`, 1 by default) therefore counts buckets per
micro-batch, and the loop shuffles the order of the buckets every epoch; `collate_batch` pads the
utterances of the buckets it is handed into one batch.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from pipelines.speech.models import collate


def make_examples(features: Sequence[np.ndarray], segments: Sequence, vocab) -> list[dict]:
    """One training example per utterance: fbank features, target (German) and source (English) ids."""
    if len(features) != len(segments):
        raise ValueError(f"{len(features)} feature rows for {len(segments)} segments")
    return [{"features": np.asarray(f, dtype=np.float32), "tgt_ids": vocab.encode(s.tgt), "src_ids": vocab.encode(s.en)}
            for f, s in zip(features, segments)]


def bucket_batches(examples: Sequence[dict], bucket_size: int, seed: int = 0, jitter: float = 0.1) -> list[list[dict]]:
    """Groups of `bucket_size` utterances of similar length (frame counts jittered by +-`jitter`)."""
    rng = random.Random(seed)
    keys = [len(e["features"]) * (1.0 + rng.uniform(-jitter, jitter)) for e in examples]
    order = sorted(range(len(examples)), key=keys.__getitem__)
    return [[examples[i] for i in order[k:k + bucket_size]] for k in range(0, len(order), bucket_size)]


def collate_batch(pad_id: int):
    """collate_fn for the loop: it hands over a list of `batch_size` length buckets, padded as one batch."""
    def fn(items: list[list[dict]]) -> dict[str, torch.Tensor]:
        return collate([e for group in items for e in group], pad_id)
    return fn


def st_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """loss_fn for the loop: the model's `total` loss, every component as a float metric."""
    out = model.loss(batch)
    metrics = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items() if k != "total"}
    return out["total"], metrics
