"""The visual reward model: a LLaVA backbone with a bias-free scalar head (RoVRM's readout).

Reward = head(final hidden state of the last real token), the eos after the response, which is
never an image position. With `likelihood_anchor`, the reward adds `likelihood_scale` times the
mean log-probability the model's own language model gives the response (image and prompt in
context), and the head starts at zero: the untrained reward model then ranks answers exactly as
the policy it starts from believes them, and training corrects that judgement instead of having to
rediscover it. Why: the policy's likelihood ranks held-out policy-answer pairs far better than a
scalar head trained from scratch on top of it (docs/results/rovrm.md). The vision tower stays
frozen; projector and LM train. Pairwise loss ``-log sigmoid(r_chosen - r_rejected)``. Scores
records (not bare prompt strings) because a sample is an image plus text:
`prob_first_better_records` is what the shared pair harness calls, and `load_scorer` gives the
reward registry's scorer (prompts are visual records: image + prompt).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pipelines.models.reward.backbone import last_token_index
from pipelines.models.reward.batching import pad_right

from pipelines.models.vlm.encoding import Layout, collate_pairs, pair_examples
from pipelines.models.vlm.llava import freeze_vision_tower, hidden_states, load_vlm, pixel_tensor, save_vlm

HEAD_FILE = "reward_head.safetensors"
CONFIG_FILE = "visual_rm.json"
FORMAT = "visual-rm-v2"  # v2 adds the likelihood anchor; v1 (head only) still loads
FORMATS = ("visual-rm-v1", FORMAT)

ImageFn = Callable[[dict], "np.ndarray | None"]


class VisualRewardModel(nn.Module):
    def __init__(self, vlm, tokenizer, max_length: int, seed: int = 0, likelihood_anchor: bool = False):
        super().__init__()
        self.vlm = vlm
        self.tokenizer = tokenizer
        self.layout = Layout.of(vlm, tokenizer, max_length)
        self.likelihood_anchor = bool(likelihood_anchor)
        hidden = int(vlm.config.text_config.hidden_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(hidden, 1, bias=False)
            nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        if self.likelihood_anchor:
            nn.init.zeros_(self.head.weight)  # the untrained reward is the likelihood alone
            self.likelihood_scale = nn.Parameter(torch.tensor(1.0))
        self.frozen_params = freeze_vision_tower(vlm)

    @property
    def pad_id(self) -> int:
        return self.layout.pad_id

    def forward(self, input_ids, attention_mask, pixel_values=None, response_start=None) -> torch.Tensor:
        """One reward per row; `response_start` (each row's prompt length) is needed with the anchor."""
        h = hidden_states(self.vlm, input_ids, attention_mask, pixel_values)
        rows = torch.arange(h.shape[0])
        reward = self.head(h[rows, last_token_index(attention_mask)]).squeeze(-1).float()
        if not self.likelihood_anchor:
            return reward
        if response_start is None:
            raise ValueError("a likelihood-anchored visual reward model needs response_start (the prompt lengths)")
        return reward + self.likelihood_scale * mean_response_logprob(self.vlm, h, input_ids, attention_mask,
                                                                      response_start)

    def examples(self, records: Sequence[dict], image_fn: ImageFn) -> list[dict]:
        return pair_examples(records, self.layout, [image_fn(r) for r in records])

    @torch.no_grad()
    def reward_pairs(self, records: Sequence[dict], image_fn: ImageFn, batch_size: int = 32
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(r_chosen, r_rejected) for every record, in eval mode."""
        was_training = self.training
        self.eval()
        chosen, rejected = [], []
        try:
            for start in range(0, len(records), batch_size):
                batch = collate_pairs(self.examples(records[start:start + batch_size], image_fn), self.pad_id)
                r = self(**batch)
                n = r.shape[0] // 2
                chosen.append(r[:n].numpy())
                rejected.append(r[n:].numpy())
        finally:
            self.train(was_training)
        return np.concatenate(chosen), np.concatenate(rejected)

    @torch.no_grad()
    def rewards(self, records: Sequence[dict], image_fn: ImageFn, batch_size: int = 64) -> np.ndarray:
        """Reward of each record's "response" to its "prompt" (with its image), in eval mode."""
        was_training = self.training
        self.eval()
        out = []
        try:
            for start in range(0, len(records), batch_size):
                batch = records[start:start + batch_size]
                laid = [self.layout.sample_ids(r["prompt"], r["response"], image_fn(r) is not None) for r in batch]
                ids, mask = pad_right([seq for seq, _ in laid], self.pad_id)
                present = [image_fn(r) for r in batch if image_fn(r) is not None]
                pixels = pixel_tensor(np.stack(present)) if present else None
                starts = torch.tensor([start for _, start in laid], dtype=torch.long)
                out.append(self(ids, mask, pixels, starts).numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def scorer(self, image_fn: ImageFn) -> "RecordScorer":
        return RecordScorer(self, image_fn)

    def save(self, out_dir: Path) -> None:
        out = Path(out_dir)
        save_vlm(self.vlm, self.tokenizer, out)
        tensors = {"weight": self.head.weight.detach().contiguous()}
        if self.likelihood_anchor:
            tensors["likelihood_scale"] = self.likelihood_scale.detach().reshape(1).contiguous()
        save_file(tensors, str(out / HEAD_FILE))
        (out / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "max_length": self.layout.max_length,
                                                   "likelihood_anchor": self.likelihood_anchor}, indent=2))


def mean_response_logprob(vlm, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          response_start: torch.Tensor) -> torch.Tensor:
    """Mean log-probability of each row's response tokens (eos included) under the VLM's own LM head,
    from the final hidden states already computed (position t predicts token t + 1). The LM head runs on
    the response positions only: image and prompt positions are most of a sequence and their logits
    would be thrown away."""
    positions = torch.arange(1, input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    in_response = (positions >= response_start.unsqueeze(1)) & attention_mask[:, 1:].bool()
    rows, cols = in_response.nonzero(as_tuple=True)
    logits = vlm.get_output_embeddings()(hidden[rows, cols]).float()  # hidden at t predicts input_ids[t + 1]
    token_logprob = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[rows, cols + 1].unsqueeze(-1)).squeeze(-1)
    totals = torch.zeros(input_ids.shape[0], dtype=token_logprob.dtype, device=token_logprob.device)
    totals = totals.index_add(0, rows, token_logprob)
    return totals / in_response.sum(1).clamp(min=1)


class RecordScorer:
    """The pair-harness adapter: P(chosen beats rejected) = sigmoid(r_c - r_r), order-free."""

    def __init__(self, rm: VisualRewardModel, image_fn: ImageFn, batch_size: int = 32):
        self.rm, self.image_fn, self.batch_size = rm, image_fn, batch_size

    def prob_first_better_records(self, records: Sequence[dict]) -> dict:
        rc, rr = self.rm.reward_pairs(records, self.image_fn, self.batch_size)
        p = 1.0 / (1.0 + np.exp(-(rc - rr)))
        return {"p": p, "p_order1": p, "p_order2": p}


def pairwise_loss(model: VisualRewardModel, batch: dict):
    """Mean ``-log sigmoid(r_chosen - r_rejected)`` and batch accuracy."""
    r = model(**batch)
    n = r.shape[0] // 2
    d = r[:n] - r[n:]
    loss = -F.logsigmoid(d).mean()
    return loss, {"acc": float((d > 0).float().mean())}


def load_visual_rm(path: Path) -> VisualRewardModel:
    """A reward model saved by `VisualRewardModel.save` (safetensors only)."""
    p = Path(path)
    cfg_path = p / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{p} is not a visual reward model directory (no {CONFIG_FILE})")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") not in FORMATS:
        raise ValueError(f"{cfg_path}: format {cfg.get('format')!r}, expected one of {FORMATS}")
    anchored = bool(cfg.get("likelihood_anchor", False))
    vlm, tokenizer = load_vlm(str(p))
    rm = VisualRewardModel(vlm, tokenizer, int(cfg["max_length"]), likelihood_anchor=anchored)
    tensors = load_file(str(p / HEAD_FILE))
    rm.head.weight.data.copy_(tensors["weight"])
    if anchored:
        if "likelihood_scale" not in tensors:
            raise ValueError(f"{p / HEAD_FILE}: no likelihood_scale, but {cfg_path} says likelihood_anchor")
        rm.likelihood_scale.data.copy_(tensors["likelihood_scale"].reshape(()))
    return rm.eval()


class VisualScorer:
    """The reward registry's protocol for a visual reward model; `prompts` are records with "prompt" and "image".

    `images` maps a record to its pixels at the model's resolution (None for a text-only record).
    """

    def __init__(self, rm: VisualRewardModel, images: ImageFn, batch_size: int = 64):
        self.rm, self.images, self.batch_size = rm, images, int(batch_size)

    def score(self, prompts: Sequence[dict], responses: Sequence[str]) -> torch.Tensor:
        """Reward of each response to its prompt record (float32, one per pair, in order)."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        records = [{**p, "response": y} for p, y in zip(prompts, responses)]
        return torch.from_numpy(self.rm.rewards(records, self.images, self.batch_size))

    def prob_first_better(self, prompts: Sequence[dict], a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """P(a beats b) = sigmoid(r_a - r_b) for each prompt record."""
        return torch.sigmoid(self.score(prompts, a) - self.score(prompts, b))

    def choose_best(self, prompts: Sequence[dict], candidates: Sequence[Sequence[str]]) -> list[int]:
        """Index of the highest-reward candidate of each prompt (the first on ties), all scored in one pass."""
        if len(prompts) != len(candidates):
            raise ValueError(f"choose_best: {len(prompts)} prompts but {len(candidates)} candidate lists")
        if any(not c for c in candidates):
            raise ValueError("choose_best: a prompt has no candidates")
        flat = self.score([p for p, c in zip(prompts, candidates) for _ in c], [y for c in candidates for y in c])
        picks, start = [], 0
        for c in candidates:
            picks.append(int(flat[start:start + len(c)].argmax()))
            start += len(c)
        return picks


def load_scorer(model_dir: Path, *, images: ImageFn | None = None, batch_size: int = 64, **_context) -> VisualScorer:
    """The registry entry point: the reward model saved in `model_dir`, scoring records with `images`.

    Other context the registry passes (meant for text reward models) is not used here.
    """
    if images is None:
        raise ValueError(f"{model_dir}: a visual reward model needs `images` (record -> pixels) to score")
    return VisualScorer(load_visual_rm(model_dir), images, batch_size)
