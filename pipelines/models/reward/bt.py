"""Bradley-Terry reward model baseline on the same backbone as GRAM.

Scalar reward = bias-free linear head on the final hidden state of the last real token
(eos) of ``bos format_prompt(prompt) " " response eos``. Trained with
``-log sigmoid(r_chosen - r_rejected)``. Exposes the same ``prob_first_better`` dict as
GRAM so evaluation code can treat both alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pipelines.data.template import ASSISTANT_CUE, USER_PREFIX
from pipelines.models.causal_lm import load_causal_lm, save_causal_lm
from pipelines.models.reward.backbone import last_hidden
from pipelines.models.reward.batching import map_sorted_eval, pad_id_of, pad_right
from pipelines.models.reward.judge import encode
from pipelines.models.reward.truncation import allocate, keep_left

CONFIG_NAME = "bt_config.json"
HEAD_NAME = "reward_head.safetensors"
FORMAT_VERSION = "bt-v1"


def bt_ids(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """``bos "User:" " prompt" "\\nAssistant:" " response" eos``, the text of
    ``format_prompt(prompt) + " " + response``; segments are encoded separately so the
    template survives truncation (response cut from the right, prompt from the left, see
    ``truncation.allocate``). bos/eos are added only if the tokenizer has them."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    head, cue = encode(tokenizer, USER_PREFIX.rstrip()), encode(tokenizer, ASSISTANT_CUE)
    p = encode(tokenizer, " " + (prompt or "").strip())
    response = (response or "").strip()
    r = encode(tokenizer, " " + response) if response else []
    fixed = bos + head + cue + eos
    n_p, (n_r,) = allocate(len(p), [len(r)], max_length - len(fixed))
    return bos + head + keep_left(p, n_p) + cue + r[:n_r] + eos


def bt_examples(records: Iterable[dict], tokenizer, max_length: int) -> list[dict]:
    """One example per record: ``chosen_ids`` and ``rejected_ids`` (LongTensors)."""
    out = []
    for rec in records:
        prompt = rec.get("prompt") or ""
        out.append(
            {
                "chosen_ids": torch.tensor(bt_ids(tokenizer, prompt, rec.get("chosen"), max_length)),
                "rejected_ids": torch.tensor(bt_ids(tokenizer, prompt, rec.get("rejected"), max_length)),
            }
        )
    return out


def collate_bt(batch: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``[2n, L]`` batch: rows ``:n`` chosen, rows ``n:`` rejected (one forward)."""
    seqs = [ex["chosen_ids"] for ex in batch] + [ex["rejected_ids"] for ex in batch]
    input_ids, attention_mask = pad_right(seqs, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def bt_loss(model, batch: dict):
    """Mean ``-log sigmoid(r_chosen - r_rejected)`` and pairwise accuracy."""
    r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    n = r.shape[0] // 2
    d = r[:n] - r[n:]
    loss = -F.logsigmoid(d).mean()
    return loss, {"loss": float(loss.detach()), "acc": float((d > 0).float().mean())}


class BTRewardModel(nn.Module):
    """Causal LM backbone (its LM head unused) + scalar head; ``forward`` gives rewards ``[n]``."""

    def __init__(self, causal_lm, tokenizer, max_length: int | None = None, seed: int = 0):
        super().__init__()
        self.causal_lm = causal_lm
        self.tokenizer = tokenizer
        hidden = int(causal_lm.config.hidden_size)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(seed)
            self.head = nn.Linear(hidden, 1, bias=False)
            nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        if max_length is None:
            max_length = int(getattr(causal_lm.config, "max_position_embeddings", 2048))
        self.max_length = int(max_length)
        bt_ids(tokenizer, "", "", self.max_length)  # fails early if the template cannot fit
        self.pad_id = pad_id_of(tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = last_hidden(self.causal_lm, input_ids, attention_mask)
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1).float()

    @torch.no_grad()
    def rewards(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Rewards ``[n]`` in eval mode without grad (length-sorted batches)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts vs {len(responses)} responses")
        if not prompts:
            return torch.zeros(0)
        seqs = [bt_ids(self.tokenizer, p, r, self.max_length) for p, r in zip(prompts, responses)]
        return map_sorted_eval(self, seqs, batch_size, self.pad_id)

    def prob_first_better(self, prompts, ys1, ys2, batch_size: int = 32) -> dict:
        """``p = sigmoid(r1 - r2)``; BT has no order, so ``p_order1 = p_order2 = p``."""
        if not len(prompts) == len(ys1) == len(ys2):
            raise ValueError("prompts, ys1 and ys2 must have equal length")
        n = len(prompts)
        r = self.rewards(list(prompts) * 2, list(ys1) + list(ys2), batch_size)
        p = torch.sigmoid(r[:n] - r[n:])
        return {"p": p, "p_order1": p.clone(), "p_order2": p.clone()}

    def best_of_n_argmax_many(self, prompts, candidate_lists, batch_size: int = 32) -> list[int]:
        """Index of the highest reward per prompt (first one on ties); one batched pass."""
        if len(prompts) != len(candidate_lists):
            raise ValueError("one candidate list per prompt required")
        if any(len(c) == 0 for c in candidate_lists):
            raise ValueError("every candidate list needs at least one candidate")
        flat_p = [p for p, c in zip(prompts, candidate_lists) for _ in c]
        flat_c = [y for c in candidate_lists for y in c]
        if not flat_c:
            return []
        r = self.rewards(flat_p, flat_c, batch_size).tolist()
        out, start = [], 0
        for c in candidate_lists:
            seg = r[start : start + len(c)]
            out.append(max(range(len(seg)), key=lambda i: (seg[i], -i)))
            start += len(c)
        return out

    def save(self, out_dir: str) -> None:
        """Backbone LM + tokenizer (HF, safetensors), head weights, and ``bt_config.json``."""
        save_causal_lm(self.causal_lm, self.tokenizer, out_dir)
        out = Path(out_dir)
        save_file({"weight": self.head.weight.detach().contiguous()}, str(out / HEAD_NAME))
        cfg = {"kind": "bt", "format_version": FORMAT_VERSION, "max_length": self.max_length,
               "hidden_size": self.head.in_features}
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def load(cls, path: str, max_length: int | None = None) -> "BTRewardModel":
        """Load a saved BT reward model in eval mode (safetensors only)."""
        from pipelines.models.tokenizer import load_tokenizer

        p = Path(path)
        if not (p / CONFIG_NAME).is_file() or not (p / HEAD_NAME).is_file():
            raise FileNotFoundError(f"{path!r} lacks {CONFIG_NAME} or {HEAD_NAME}; not a saved BT model")
        cfg = json.loads((p / CONFIG_NAME).read_text())
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"BT checkpoint format {cfg.get('format_version')!r} != {FORMAT_VERSION!r}")
        model = cls(load_causal_lm(path), load_tokenizer(path), max_length or cfg["max_length"])
        weight = load_file(str(p / HEAD_NAME))["weight"]
        if weight.shape != model.head.weight.shape:
            raise ValueError(f"head shape {tuple(weight.shape)} != {tuple(model.head.weight.shape)}")
        with torch.no_grad():
            model.head.weight.copy_(weight)
        return model.eval()
