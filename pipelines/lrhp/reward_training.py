"""The project's Bradley-Terry reward model trained on a chosen subset of pairs, and scored against gold.

Reuses ``pipelines/models/reward/bt.py`` (model, examples, collation, loss) and the one training loop;
``margins`` switches the loss to the margin-aware form ``-log sigmoid(r_w - r_l - m)``.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_loss, collate_bt
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train


def _collate_with_margin(batch, pad_id: int) -> dict:
    out = collate_bt(batch, pad_id)
    out["margin"] = torch.tensor([float(ex["margin"]) for ex in batch])
    return out


def margin_bt_loss(model, batch: dict):
    """Mean ``-log sigmoid(r_chosen - r_rejected - m)`` (Llama-2's margin loss) and pairwise accuracy."""
    r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    n = r.shape[0] // 2
    d = r[:n] - r[n:]
    loss = -F.logsigmoid(d - batch["margin"]).mean()
    return loss, {"loss": float(loss.detach()), "acc": float((d > 0).float().mean())}


def train_bt(base: str, records: Sequence[dict], cfg, max_length: int, seed: int,
             margins: Sequence[float] | None = None) -> tuple[BTRewardModel, object]:
    """A fresh BT reward model on ``base`` trained on ``records`` (plain, or margin-aware with ``margins``)."""
    rm = BTRewardModel(load_causal_lm(base), load_tokenizer(base), max_length, seed=seed)
    examples = bt_examples(records, rm.tokenizer, rm.max_length)
    if margins is None:
        result = train(rm, examples, bt_loss, cfg, progress=False, collate_fn=partial(collate_bt, pad_id=rm.pad_id))
    else:
        if len(margins) != len(examples):
            raise ValueError(f"{len(margins)} margins for {len(examples)} pairs")
        examples = [{**ex, "margin": float(m)} for ex, m in zip(examples, margins)]
        result = train(rm, examples, margin_bt_loss, cfg, progress=False,
                       collate_fn=partial(_collate_with_margin, pad_id=rm.pad_id))
    return rm.eval(), result


def score_gaps(rm: BTRewardModel, records: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """r(chosen) - r(rejected) per record."""
    n = len(records)
    r = rm.rewards([x["prompt"] for x in records] * 2, [x["chosen"] for x in records] + [x["rejected"] for x in records],
                   batch_size)
    return (r[:n] - r[n:]).double().numpy()


def gold_order_credit(gaps: np.ndarray, records: Sequence[dict]) -> np.ndarray:
    """Per non-tied pair: 1 when the score gap orders the pair as gold does, 0.5 on a score tie, else 0."""
    margin = np.array([float(r["gold_chosen"]) - float(r["gold_rejected"]) for r in records])
    keep = margin != 0
    agree = np.sign(gaps[keep]) * np.sign(margin[keep])
    return np.where(agree > 0, 1.0, np.where(agree == 0, 0.5, 0.0))
