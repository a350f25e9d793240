"""Feeding speech-translation models to the shared training loop.

The loop draws `batch_size` items per micro-batch from a seeded permutation of its dataset. For
speech, random batches waste much of their compute on padding, so here the dataset the loop sees
is a list of *batches*: utterances sorted by frame count (with a seeded jitter, so equal lengths
mix differently per seed) and cut into groups of `batch_size`. The loop then runs with batch
size 1 and shuffles the order of these batches every epoch; `collate_batch` pads one group.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from pipelines.speech.models import collate
from pipelines.training.config import TrainConfig


def make_examples(features: Sequence[np.ndarray], segments: Sequence, vocab) -> list[dict]:
    """One training example per utterance: fbank features, target (German) and source (English) ids."""
    if len(features) != len(segments):
        raise ValueError(f"{len(features)} feature rows for {len(segments)} segments")
    return [{"features": np.asarray(f, dtype=np.float32), "tgt_ids": vocab.encode(s.tgt), "src_ids": vocab.encode(s.en)}
            for f, s in zip(features, segments)]


def bucket_batches(examples: Sequence[dict], batch_size: int, seed: int = 0, jitter: float = 0.1) -> list[list[dict]]:
    """Groups of `batch_size` utterances of similar length (frame counts jittered by +-`jitter`)."""
    rng = random.Random(seed)
    keys = [len(e["features"]) * (1.0 + rng.uniform(-jitter, jitter)) for e in examples]
    order = sorted(range(len(examples)), key=keys.__getitem__)
    return [[examples[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]


def loop_config(cfg: TrainConfig) -> TrainConfig:
    """The TrainConfig the loop gets when its dataset is pre-built batches: one batch per micro-step."""
    return replace(cfg, batch_size=1)


def collate_batch(pad_id: int):
    """collate_fn for the loop: it hands over a list holding one pre-built group."""
    def fn(items: list[list[dict]]) -> dict[str, torch.Tensor]:
        return collate([e for group in items for e in group], pad_id)
    return fn


def st_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """loss_fn for the loop: the model's `total` loss, every component as a float metric."""
    out = model.loss(batch)
    metrics = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items() if k != "total"}
    return out["total"], metrics
