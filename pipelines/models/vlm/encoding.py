"""Token layout of (image, prompt, response) samples and the batches built from them.

Layout: ``bos "USER:" [<image> x n] " prompt" " ASSISTANT:" " response" eos`` (the LLaVA-1.5
chat shape). Text-only samples (the text and caption phases) simply carry no image tokens and no
pixels: the same model reads them through its language model. Truncation cuts the prompt from
the left (the question sits at its end) and the response from the right; image tokens and the
template are never cut, so a sample always matches its pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from pipelines.models.reward.batching import pad_right
from pipelines.models.reward.truncation import allocate, keep_left

from .llava import image_token_id, n_image_tokens, pixel_tensor

USER, ASSISTANT = "USER:", " ASSISTANT:"


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class Layout:
    """What a model needs to lay out samples: tokenizer, image-token id and count, length cap."""

    tokenizer: object
    image_id: int
    n_image: int
    max_length: int

    @classmethod
    def of(cls, model, tokenizer, max_length: int) -> "Layout":
        layout = cls(tokenizer, image_token_id(tokenizer), n_image_tokens(model), int(max_length))
        layout.sample_ids("", "", has_image=True)  # fails early if the template cannot fit
        return layout

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def _parts(self, prompt: str, has_image: bool) -> tuple[list[int], list[int], list[int]]:
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        head = bos + _encode(tok, USER) + ([self.image_id] * self.n_image if has_image else [])
        body = _encode(tok, " " + (prompt or "").strip())
        if self.image_id in body:
            raise ValueError(f"prompt contains the image token itself ({prompt[:60]!r}...); the layout inserts "
                             "the image tokens, remove '<image>' from the text")
        return head, body, _encode(tok, ASSISTANT)

    def prompt_ids(self, prompt: str, has_image: bool, max_new_tokens: int = 0) -> list[int]:
        """The generation prefix (no eos), leaving room for `max_new_tokens`."""
        head, body, cue = self._parts(prompt, has_image)
        room = self.max_length - len(head) - len(cue) - max_new_tokens
        if room < 0:
            raise ValueError(f"max_length {self.max_length} cannot hold the template and {max_new_tokens} new tokens")
        return head + keep_left(body, min(len(body), room)) + cue

    def sample_ids(self, prompt: str, response: str, has_image: bool) -> tuple[list[int], int]:
        """(token ids, number of prompt tokens) of a full sample, truncated to max_length."""
        tok = self.tokenizer
        head, body, cue = self._parts(prompt, has_image)
        response = (response or "").strip()
        resp = _encode(tok, " " + response) if response else []
        eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        budget = self.max_length - len(head) - len(cue) - len(eos)
        if budget < 0:
            raise ValueError(f"max_length {self.max_length} is shorter than the template "
                             f"({len(head) + len(cue) + len(eos)} tokens with {self.n_image} image tokens)")
        n_p, (n_r,) = allocate(len(body), [len(resp)], budget)
        prefix = head + keep_left(body, n_p) + cue
        return prefix + resp[:n_r] + eos, len(prefix)


def _pixels(images: Sequence[np.ndarray | None]) -> torch.Tensor | None:
    present = [im for im in images if im is not None]
    return pixel_tensor(np.stack(present)) if present else None


def pair_examples(records: Sequence[dict], layout: Layout, images: Sequence[np.ndarray | None]) -> list[dict]:
    """One training example per preference record: chosen/rejected ids and the image (or None)."""
    if len(records) != len(images):
        raise ValueError(f"{len(records)} records but {len(images)} images")
    out = []
    for rec, image in zip(records, images):
        has_image = image is not None
        chosen, chosen_start = layout.sample_ids(rec["prompt"], rec["chosen"], has_image)
        rejected, rejected_start = layout.sample_ids(rec["prompt"], rec["rejected"], has_image)
        out.append({"chosen_ids": chosen, "rejected_ids": rejected, "image": image,
                    "chosen_start": chosen_start, "rejected_start": rejected_start})
    return out


def collate_pairs(batch: Sequence[dict], pad_id: int) -> dict:
    """Rows `:n` chosen, `n:` rejected; pixels for the image rows in row order (chosen then rejected);
    `response_start`: where each row's response begins (its prompt length)."""
    seqs = [ex["chosen_ids"] for ex in batch] + [ex["rejected_ids"] for ex in batch]
    input_ids, attention_mask = pad_right(seqs, pad_id)
    images = [ex["image"] for ex in batch] * 2
    starts = [ex["chosen_start"] for ex in batch] + [ex["rejected_start"] for ex in batch]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": _pixels(images),
            "response_start": torch.tensor(starts, dtype=torch.long)}


def lm_examples(records: Sequence[dict], layout: Layout, images: Sequence[np.ndarray | None]) -> list[dict]:
    """Supervised examples {prompt, response, image}: the loss falls on response tokens and eos only."""
    out = []
    for rec, image in zip(records, images):
        ids, n_prompt = layout.sample_ids(rec["prompt"], rec["response"], image is not None)
        out.append({"ids": ids, "n_prompt": n_prompt, "image": image})
    return out


def collate_lm(batch: Sequence[dict], pad_id: int) -> dict:
    input_ids, attention_mask = pad_right([ex["ids"] for ex in batch], pad_id)
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    for row, ex in enumerate(batch):
        labels[row, : ex["n_prompt"]] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "pixel_values": _pixels([ex["image"] for ex in batch])}
