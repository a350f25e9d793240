"""Direct Preference Optimisation (Rafailov et al. 2023) on labeled pairs, through the shared loop.

Loss: ``-log sigmoid(beta * ((log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))))`` with
sequence log-probabilities summed over response tokens. The frozen reference's log-probabilities are
computed once before training and stored with each example, so training runs one model only.
Sequences are ``bos + format_prompt(prompt)`` then ``" " + response + eos``, the same text the
policy samples; the prompt is cut from the left and the response from the right to ``max_length``.

Margin-weighted DPO (LRHP, issue 14): each pair's loss is weighted by how strongly its label is
predicted to be right, ``w = max(m, 0) / mean(max(m, 0))`` for predicted gold margins ``m``
(`margin_weights`): a pair predicted to be flipped (m <= 0) stops counting, a clear one counts more,
and the weights average 1 so the learning rate means the same as in plain DPO. Our design; the
paper's weighting is not known here.
"""
from __future__ import annotations

import sys
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pipelines.rlhf.rollout import encode_queries, position_ids


def _response_ids(tokenizer, response: str) -> list[int]:
    text = (response or "").strip()
    ids = tokenizer(" " + text, add_special_tokens=False)["input_ids"] if text else []
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def _fit(query: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Split ``max_length``: the prompt keeps up to half (its latest tokens), the response the rest (its first)."""
    if max_length < 4:
        raise ValueError(f"max_length {max_length} is too small for a prompt and a response")
    response = response[: max(max_length - min(len(query), max_length // 2), 1)]
    query = query[-(max_length - len(response)):]
    return query, response


def dpo_examples(records: Iterable[dict], tokenizer, max_length: int) -> list[dict]:
    """Each record (prompt, chosen, rejected) -> token ids of both sequences and where responses start."""
    out = []
    for rec in records:
        (query,) = encode_queries(tokenizer, [rec.get("prompt") or ""])
        ex = {}
        for side in ("chosen", "rejected"):
            q, r = _fit(query, _response_ids(tokenizer, rec.get(side)), max_length)
            ex[f"{side}_ids"] = torch.tensor(q + r, dtype=torch.long)
            ex[f"{side}_start"] = len(q)
        out.append(ex)
    return out


def margin_weights(margins: Sequence[float]) -> list[float]:
    """Per-pair DPO weights from predicted margins: the positive part, scaled to mean 1 (all 1 if none is > 0)."""
    pos = [max(float(m), 0.0) for m in margins]
    mean = sum(pos) / len(pos) if pos else 0.0
    return [p / mean for p in pos] if mean > 0 else [1.0] * len(pos)


def _pad(seqs: Sequence[torch.Tensor], starts: Sequence[int], pad_id: int):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.zeros((len(seqs), width), dtype=torch.float32)  # 1 where a response token is predicted
    for i, (s, start) in enumerate(zip(seqs, starts)):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
        labels[i, start: len(s)] = 1.0
    return ids, mask, labels


def collate_dpo(batch: Sequence[dict], pad_id: int) -> dict:
    """Right-padded ``[2n, L]``: rows ``:n`` chosen, ``n:`` rejected, with a response-token mask."""
    seqs = [ex["chosen_ids"] for ex in batch] + [ex["rejected_ids"] for ex in batch]
    starts = [ex["chosen_start"] for ex in batch] + [ex["rejected_start"] for ex in batch]
    ids, mask, labels = _pad(seqs, starts, pad_id)
    out = {"input_ids": ids, "attention_mask": mask, "response_mask": labels}
    if "ref_chosen_logp" in batch[0]:
        out["ref_logp"] = torch.tensor([ex["ref_chosen_logp"] for ex in batch] +
                                       [ex["ref_rejected_logp"] for ex in batch], dtype=torch.float32)
    if "weight" in batch[0]:
        out["weight"] = torch.tensor([float(ex["weight"]) for ex in batch], dtype=torch.float32)
    return out


def sequence_logprobs(model, input_ids, attention_mask, response_mask) -> torch.Tensor:
    """Summed log-probability of the response tokens of each row ``[B]``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)).logits
    logp = torch.gather(F.log_softmax(logits[:, :-1].float(), -1), 2, input_ids[:, 1:, None]).squeeze(-1)
    return (logp * response_mask[:, 1:]).sum(1)


@torch.no_grad()
def add_reference_logprobs(ref_model, examples: list[dict], pad_id: int, batch_size: int = 32,
                           progress: bool = True) -> None:
    """Store the frozen reference's sequence log-probabilities in each example (in place)."""
    ref_model.eval()
    for start in tqdm(range(0, len(examples), batch_size), desc="dpo reference", disable=not progress, file=sys.stderr):
        chunk = examples[start:start + batch_size]
        b = collate_dpo(chunk, pad_id)
        logp = sequence_logprobs(ref_model, b["input_ids"], b["attention_mask"], b["response_mask"])
        n = len(chunk)
        for ex, c, r in zip(chunk, logp[:n].tolist(), logp[n:].tolist()):
            ex["ref_chosen_logp"], ex["ref_rejected_logp"] = c, r


def dpo_loss(model, batch: dict, beta: float):
    """DPO loss with implicit-reward diagnostics (accuracy, margin, chosen and rejected rewards).

    With ``batch["weight"]`` (margin-weighted DPO) each pair's term is multiplied by its weight.
    """
    if "ref_logp" not in batch:
        raise ValueError("DPO batches need reference log-probs: call add_reference_logprobs first")
    logp = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])
    n = logp.shape[0] // 2
    implicit = beta * (logp - batch["ref_logp"])
    margin = implicit[:n] - implicit[n:]
    per_pair = -F.logsigmoid(margin)
    loss = (per_pair * batch["weight"]).mean() if "weight" in batch else per_pair.mean()
    return loss, {"loss": float(loss.detach()), "acc": float((margin > 0).float().mean()),
                  "margin": float(margin.mean()), "reward_chosen": float(implicit[:n].mean()),
                  "reward_rejected": float(implicit[n:].mean())}
