"""LRHP training objectives, each switched on by a weight so an ablation is one override.

- ``preference`` (weight ``w_pref``): logistic loss of the preference head on z, "is response A the
  labelled-preferred one?", with A/B in a seeded random order per pair.
- ``contrastive`` (weight ``w_con``): supervised contrastive loss (Khosla et al. 2020) over the
  *kind of preference*. Kinds are directional: a pair and its order-swapped copy carry the same kind
  but opposite orientation, so they get different labels and the swapped copy is the anchor's hard
  negative, while same-kind pairs in the same orientation are positives.

With ``swap_negatives`` every batch encodes each pair in both orders (2n sequences, both feed both
losses); without it, one random order per pair (n sequences) and no swapped copies.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch
import torch.nn.functional as F

from pipelines.models.reward.batching import pad_right


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over anchors with >= 1 positive of ``-1/|P(i)| sum_p log softmax_{a != i}(z_i.z_a / T)[p]``.

    ``z`` is ``[m, d]`` (normalised), ``labels`` ``[m]`` ints; anchors without a positive are skipped
    (0 when none has one).
    """
    if temperature <= 0:
        raise ValueError(f"contrastive temperature must be > 0, got {temperature}")
    m = z.shape[0]
    sim = z @ z.T / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1)[has] / n_pos[has])
    return per_anchor.mean()


def pair_examples(records: Sequence[dict], encoder, kind_ids: Sequence[int], seed: int) -> list[dict]:
    """Per record: ids in a seeded random order (``first_is_chosen``), ids swapped, and the kind id."""
    rng = random.Random(f"lrhp-order:{seed}")
    out = []
    for rec, kind in zip(records, kind_ids):
        chosen_first = rng.random() < 0.5
        a, b = (rec["chosen"], rec["rejected"]) if chosen_first else (rec["rejected"], rec["chosen"])
        out.append({"ids": encoder.ids(rec["prompt"], a, b), "swapped_ids": encoder.ids(rec["prompt"], b, a),
                    "first_is_chosen": chosen_first, "kind": int(kind)})
    return out


def collate_pairs(batch: Sequence[dict], pad_id: int, swap_negatives: bool) -> dict[str, torch.Tensor]:
    """Right-padded rows: the n drawn orders, then (with ``swap_negatives``) the n swapped copies."""
    seqs = [ex["ids"] for ex in batch]
    first = torch.tensor([float(ex["first_is_chosen"]) for ex in batch])
    kinds = torch.tensor([ex["kind"] for ex in batch], dtype=torch.long)
    orient = first.long()
    if swap_negatives:
        seqs += [ex["swapped_ids"] for ex in batch]
        first, kinds, orient = torch.cat([first, 1 - first]), torch.cat([kinds, kinds]), torch.cat([orient, 1 - orient])
    input_ids, attention_mask = pad_right(seqs, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "first_is_chosen": first,
            "labels": kinds * 2 + orient}


def make_lrhp_loss(w_pref: float, w_con: float, temperature: float):
    """The training loss ``w_pref * preference + w_con * contrastive`` for ``train(...)``."""
    if w_pref < 0 or w_con < 0 or w_pref + w_con <= 0:
        raise ValueError(f"lrhp objectives: weights must be >= 0 with a positive sum, got {w_pref}, {w_con}")

    def loss_fn(model, batch):
        z = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logit = model.first_preferred_logit(z)
        pref = F.binary_cross_entropy_with_logits(logit, batch["first_is_chosen"])
        con = supcon_loss(z, batch["labels"], temperature) if w_con > 0 else z.sum() * 0.0
        loss = w_pref * pref + w_con * con
        acc = float(((logit > 0).float() == batch["first_is_chosen"]).float().mean())
        return loss, {"loss": float(loss.detach()), "pref_loss": float(pref.detach()),
                      "con_loss": float(con.detach()), "acc": acc}
    return loss_fn
