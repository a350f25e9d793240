"""GRAM generative reward model: a plain causal LM that answers "A" or "B" to a judge prompt.

Readout: softmax over the two candidate-token logits at the cue, for both response orders;
``s(y1) = 1/2 [P(A | y1, y2) + P(B | y2, y1)]`` cancels position bias (the two orders are
not renormalised against each other).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from pipelines.models.causal_lm import load_causal_lm, save_causal_lm
from pipelines.models.reward.backbone import last_hidden
from pipelines.models.reward.batching import map_sorted_eval, pad_id_of
from pipelines.models.reward.judge import TEMPLATE_VERSION, judge_ids, judge_tokens, min_judge_length
from pipelines.models.reward.selection import knockout_many, pairwise_scores, rank_by_scores

CONFIG_NAME = "gram_config.json"


def lm_pair_logits(causal_lm, input_ids, attention_mask, candidate_ids) -> torch.Tensor:
    """Logits ``[n, 2]`` of the (A, B) tokens predicted after each row's last real token."""
    h = last_hidden(causal_lm, input_ids, attention_mask)
    head = causal_lm.get_output_embeddings()
    return head(h)[:, list(candidate_ids)].float()


def _check_lengths(*seqs: Sequence) -> int:
    n = len(seqs[0])
    if any(len(s) != n for s in seqs):
        raise ValueError(f"inputs differ in length: {[len(s) for s in seqs]}")
    return n


class GenerativeRewardModel(nn.Module):
    """Causal LM + judge template; ``forward`` gives training logits, the rest is inference."""

    def __init__(self, causal_lm, tokenizer, max_length: int | None = None):
        super().__init__()
        self.causal_lm = causal_lm
        self.tokenizer = tokenizer
        self.tokens = judge_tokens(tokenizer)
        if max_length is None:
            max_length = int(getattr(causal_lm.config, "max_position_embeddings", 2048))
        floor = min_judge_length(self.tokens)
        if max_length < floor:
            raise ValueError(f"max_length {max_length} is below the judge template size {floor}")
        self.max_length = int(max_length)
        self.pad_id = pad_id_of(tokenizer)

    @property
    def candidate_ids(self) -> tuple[int, int]:
        return self.tokens.candidate_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(A, B) logits ``[n, 2]`` for encoded judge inputs (any padding side)."""
        return lm_pair_logits(self.causal_lm, input_ids, attention_mask, self.candidate_ids)

    def encode(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> list:
        """Judge token ids per pair, truncated to ``max_length`` (see judge.judge_ids)."""
        _check_lengths(prompts, responses_a, responses_b)
        return [
            judge_ids(self.tokenizer, self.tokens, p, a, b, self.max_length)
            for p, a, b in zip(prompts, responses_a, responses_b)
        ]

    @torch.no_grad()
    def _logits(self, seqs: list, batch_size: int) -> torch.Tensor:
        return map_sorted_eval(self, seqs, batch_size, self.pad_id)

    def pair_logits(self, prompts, responses_a, responses_b, batch_size: int = 32) -> torch.Tensor:
        """(A, B) logits ``[n, 2]`` at the cue; no grad, eval mode, length-sorted batches."""
        return self._logits(self.encode(prompts, responses_a, responses_b), batch_size)

    def prob_first_better(self, prompts, ys1, ys2, batch_size: int = 32) -> dict:
        """Swap-averaged probability that ``ys1[i]`` beats ``ys2[i]``.

        Returns ``p`` = s(y1), ``p_order1`` = P(A | y1, y2) and ``p_order2`` = P(B | y2, y1);
        both orders run in one batched pass.
        """
        n = _check_lengths(prompts, ys1, ys2)
        if n == 0:
            empty = torch.zeros(0)
            return {"p": empty, "p_order1": empty.clone(), "p_order2": empty.clone()}
        seqs = self.encode(prompts, ys1, ys2) + self.encode(prompts, ys2, ys1)
        probs = torch.softmax(self._logits(seqs, batch_size), dim=-1)
        p1, p2 = probs[:n, 0], probs[n:, 1]
        return {"p": 0.5 * (p1 + p2), "p_order1": p1, "p_order2": p2}

    def _comparator(self, prompts, candidate_lists, batch_size: int):
        def compare(triples):
            return self.prob_first_better(
                [prompts[g] for g, _, _ in triples],
                [candidate_lists[g][i] for g, i, _ in triples],
                [candidate_lists[g][j] for g, _, j in triples],
                batch_size=batch_size,
            )["p"].tolist()

        return compare

    def best_of_n_knockout_many(self, prompts, candidate_lists, batch_size: int = 32) -> list[int]:
        """Knockout winner per prompt; each round batches all prompts' comparisons."""
        _check_lengths(prompts, candidate_lists)
        sizes = [len(c) for c in candidate_lists]
        return knockout_many(sizes, self._comparator(prompts, candidate_lists, batch_size))

    def best_of_n_knockout(self, prompt: str, candidates: Sequence[str], batch_size: int = 32) -> int:
        """Knockout winner among ``candidates`` (n - 1 comparisons, 2 passes each)."""
        return self.best_of_n_knockout_many([prompt], [list(candidates)], batch_size)[0]

    def rank(self, prompt: str, candidates: Sequence[str], batch_size: int = 32) -> list[int]:
        """Indices best-first by soft Borda score: summed swap-averaged win probability
        against every other candidate (all n(n-1)/2 pairs, ties keep input order)."""
        compare = self._comparator([prompt], [list(candidates)], batch_size)
        return rank_by_scores(pairwise_scores(len(candidates), compare))

    def save(self, out_dir: str) -> None:
        """LM + tokenizer as an HF checkpoint (safetensors) plus ``gram_config.json``."""
        save_causal_lm(self.causal_lm, self.tokenizer, out_dir)
        cfg = {
            "kind": "gram",
            "template_version": TEMPLATE_VERSION,
            "max_length": self.max_length,
            "candidate_ids": list(self.candidate_ids),
        }
        (Path(out_dir) / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def load(cls, path: str, max_length: int | None = None) -> "GenerativeRewardModel":
        """Load a saved GRAM in eval mode; ``max_length`` overrides the saved one."""
        from pipelines.models.tokenizer import load_tokenizer

        cfg_path = Path(path) / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{path!r} has no {CONFIG_NAME}; not a saved GRAM")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("template_version") != TEMPLATE_VERSION:
            raise ValueError(
                f"checkpoint uses judge template {cfg.get('template_version')!r}, code has {TEMPLATE_VERSION!r}"
            )
        rm = cls(load_causal_lm(path), load_tokenizer(path), max_length or cfg["max_length"])
        if list(rm.candidate_ids) != list(cfg["candidate_ids"]):
            raise ValueError(f"tokenizer candidate ids {rm.candidate_ids} != saved {cfg['candidate_ids']}")
        return rm.eval()
