"""The vision-language policy: captioning / answer pre-training and sampling responses for best-of-n."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from pipelines.models.vlm.encoding import Layout
from pipelines.models.vlm.llava import pixel_tensor
from pipelines.training.distributed import gather, ranks, shard


def captioning_loss(model, batch: dict):
    """Token cross-entropy on response tokens (prompt, image and pad positions are masked in `labels`).

    Under several ranks it names its token count (`target_tokens`), so the loop weights each rank's
    mean by its share of the step's tokens; one process logs no extra metric (its history is unchanged)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], labels=batch["labels"], use_cache=False)
    if ranks().world == 1:
        return out.loss, {}
    return out.loss, {"target_tokens": float((batch["labels"][:, 1:] != -100).sum())}


@torch.no_grad()
def generate(vlm, layout: Layout, prompt: str, image: np.ndarray | None, n: int, max_new_tokens: int,
             temperature: float = 1.0, greedy: bool = False) -> list[str]:
    """`n` responses to one prompt (one unpadded batch, so positions are exact); uses the global torch RNG."""
    tok = layout.tokenizer
    ids = torch.tensor([layout.prompt_ids(prompt, image is not None, max_new_tokens)] * n)
    kwargs = {"pixel_values": pixel_tensor(np.stack([image] * n))} if image is not None else {}
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": float(temperature), "top_k": 0}
    out = vlm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(max_new_tokens),
                       pad_token_id=layout.pad_id, eos_token_id=tok.eos_token_id, **sampling, **kwargs)
    return [tok.decode(row[ids.shape[1]:], skip_special_tokens=True).strip() for row in out]


def sample_responses(vlm, layout: Layout, prompts: Sequence[dict], images: Sequence[np.ndarray | None], n: int,
                     max_new_tokens: int, temperature: float, seed: int, greedy: bool = False) -> list[list[str]]:
    """`n` samples per prompt record (its "prompt" text with its image), reproducible for a seed.

    Under several ranks each rank samples a contiguous block of the prompts and every rank gets all
    of them back in order. Greedy results do not depend on the number of ranks; sampled ones do
    (one RNG stream runs through a rank's prompts, seeded `seed` on rank 0 and `seed + rank` on
    the others, so one process is unchanged)."""
    here = ranks()
    pairs = shard(list(zip(prompts, images)))
    was_training = vlm.training
    vlm.eval()
    out = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + here.rank * 1_000_003)
            for rec, image in tqdm(pairs, desc="sample", leave=False):
                out.append(generate(vlm, layout, rec["prompt"], image, n, max_new_tokens, temperature, greedy))
    finally:
        vlm.train(was_training)
    return gather(out)
