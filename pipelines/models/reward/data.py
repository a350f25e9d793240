"""Training examples for GRAM's two stages and the judge collate function."""

from __future__ import annotations

import random
from typing import Iterable, Sequence

import torch

from pipelines.data.lm_data import IGNORE_INDEX
from pipelines.models.reward.batching import pad_right
from pipelines.models.reward.judge import judge_ids, judge_tokens, pair_lm_ids


def _text(rec: dict, key: str) -> str:
    return rec.get(key) or ""


def unlabeled_pair_examples(records: Iterable[dict], tokenizer, max_length: int) -> list[dict]:
    """Stage 1 (no labels): next-token targets on both responses given the prompt.

    Layout is the judge template without the cue: ``bos "User question:" prompt "[Response A]"
    a "[Response B]" b eos``, so stage 1 already reads the layout stage 2 judges. Labels are
    -100 on bos, markers and prompt; targets are a, b and eos, i.e. the loss is
    ``-log p(a | x) - log p(b | x, a)``. Truncation as in ``truncation.allocate``.
    Collate with ``pipelines.data.lm_data.collate_pad``.
    """
    jt = judge_tokens(tokenizer)
    out = []
    for rec in records:
        ids, target = pair_lm_ids(
            tokenizer, jt, _text(rec, "prompt"), _text(rec, "response_a"), _text(rec, "response_b"), max_length
        )
        labels = [t if keep else IGNORE_INDEX for t, keep in zip(ids, target)]
        out.append(
            {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}
        )
    return out


def preference_examples(
    records: Iterable[dict], tokenizer, max_length: int, seed: int = 0, both_orders: bool = False
) -> list[dict]:
    """Stage 2: judge inputs with the chosen response at A or B and ``winner`` (0=A, 1=B).

    The order is drawn per record from ``random.Random(seed)`` (so data order and seed fix
    it); ``both_orders`` emits both placements instead, chosen-at-A first.
    """
    jt = judge_tokens(tokenizer)
    rng = random.Random(seed)
    out = []
    for rec in records:
        prompt, chosen, rejected = _text(rec, "prompt"), _text(rec, "chosen"), _text(rec, "rejected")
        if both_orders:
            placements = [0, 1]
        else:
            placements = [1 if rng.random() < 0.5 else 0]
        for winner in placements:
            a, b = (chosen, rejected) if winner == 0 else (rejected, chosen)
            ids = judge_ids(tokenizer, jt, prompt, a, b, max_length)
            out.append({"input_ids": torch.tensor(ids, dtype=torch.long), "winner": winner})
    return out


def collate_judge(batch: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` + ``winner``; logits are read at each
    row's last real token, so right padding is exact."""
    input_ids, attention_mask = pad_right([ex["input_ids"] for ex in batch], pad_id)
    winner = torch.tensor([int(ex["winner"]) for ex in batch], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "winner": winner}
