"""Sample embeddings for optimal-transport selection, from the vision-language policy itself.

A preference pair is embedded as the mean, over its two sequences (prompt + chosen, prompt +
rejected), of the mean final hidden state over its text positions. Image positions are left out of
the pool (a real LLaVA has 576 of them against a few dozen words, which would put every visual
sample far from every text one whatever it says), but the text positions after the image attend to
it, so a visual sample's embedding is still its text read in the light of its image.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipelines.models.vlm.encoding import Layout, collate_pairs, pair_examples
from pipelines.models.vlm.llava import hidden_states


@torch.no_grad()
def embed_pairs(vlm, layout: Layout, records: Sequence[dict], image_fn: Callable[[dict], np.ndarray | None],
                batch_size: int = 64, desc: str = "embed") -> np.ndarray:
    """float32 `[n, hidden]` embeddings of preference records (length-sorted batches, input order kept)."""
    if not records:
        raise ValueError("embed_pairs: no records")
    was_training = vlm.training
    vlm.eval()
    order = sorted(range(len(records)), key=lambda i: (len(records[i]["prompt"]) + len(records[i]["chosen"]), i))
    out = np.zeros((len(records), int(vlm.config.text_config.hidden_size)), dtype=np.float32)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            idx = order[start:start + batch_size]
            batch = [records[i] for i in idx]
            enc = collate_pairs(pair_examples(batch, layout, [image_fn(r) for r in batch]), layout.pad_id)
            h = hidden_states(vlm, enc["input_ids"], enc["attention_mask"], enc["pixel_values"])
            mask = (enc["attention_mask"].bool() & (enc["input_ids"] != layout.image_id)).unsqueeze(-1).float()
            seq_mean = (h * mask).sum(1) / mask.sum(1)
            n = len(idx)
            out[idx] = ((seq_mean[:n] + seq_mean[n:]) / 2).numpy()
    finally:
        vlm.train(was_training)
    return out
