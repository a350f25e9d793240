"""LRHP pair encoder: one vector per preference pair (prompt, response A, response B).

Design (ours; the LRHP paper's architecture is not available here, see docs/lrhp.md):
- One sequence ``bos "User question:" prompt [Response A] a [Response B] b <pair>`` (the GRAM judge
  markers, with a dedicated ``<pair>`` special token in place of the judge cue). The token is added
  to the tokenizer and its embedding row starts at the mean of the existing rows.
- The backbone's final hidden state at ``<pair>`` -> linear projection -> L2-normalised ``z``
  (``dim`` dimensions). The order of A and B matters: z(x, y_w, y_l) and z(x, y_l, y_w) differ, and
  a linear preference head on z says whether A is the preferred one.
- Saved as a folder: the backbone and tokenizer via ``save_pretrained`` (safetensors), the
  projection and head in ``lrhp_heads.safetensors``, the settings in ``lrhp_config.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pipelines.models.causal_lm import load_causal_lm, save_causal_lm
from pipelines.models.reward.backbone import last_hidden
from pipelines.models.reward.batching import map_sorted_eval, pad_id_of
from pipelines.models.reward.judge import HEADER, MARK_A, MARK_B, encode
from pipelines.models.reward.truncation import allocate, keep_left

PAIR_TOKEN = "<pair>"
CONFIG_NAME = "lrhp_config.json"
HEADS_NAME = "lrhp_heads.safetensors"
FORMAT_VERSION = "lrhp-v1"


def add_pair_token(causal_lm, tokenizer) -> int:
    """Id of ``<pair>``, adding it (and one embedding row at the mean of the others) if missing."""
    if PAIR_TOKEN in tokenizer.get_vocab():
        return int(tokenizer.convert_tokens_to_ids(PAIR_TOKEN))
    tokenizer.add_special_tokens({"additional_special_tokens": [PAIR_TOKEN]})
    new_id = int(tokenizer.convert_tokens_to_ids(PAIR_TOKEN))
    old = causal_lm.get_input_embeddings().weight.shape[0]
    causal_lm.resize_token_embeddings(max(old, new_id + 1), mean_resizing=False)
    with torch.no_grad():
        emb = causal_lm.get_input_embeddings().weight
        emb[new_id] = emb[:old].mean(dim=0)
    return new_id


def pair_ids(tokenizer, pair_id: int, prompt: str, a: str, b: str, max_length: int) -> list[int]:
    """``bos header prompt [A] a [B] b <pair>``, cut by the shared truncation rule (``<pair>`` always kept)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    head, mark_a, mark_b = encode(tokenizer, HEADER), encode(tokenizer, MARK_A), encode(tokenizer, MARK_B)
    p = encode(tokenizer, " " + (prompt or "").strip())
    ta, tb = encode(tokenizer, (a or "").strip()), encode(tokenizer, (b or "").strip())
    fixed = len(bos) + len(head) + len(mark_a) + len(mark_b) + 1
    n_p, (n_a, n_b) = allocate(len(p), [len(ta), len(tb)], max_length - fixed)
    return bos + head + keep_left(p, n_p) + mark_a + ta[:n_a] + mark_b + tb[:n_b] + [pair_id]


class PairEncoder(nn.Module):
    """Causal-LM backbone + projection to ``dim`` (L2-normalised) + a preference head on the vector."""

    def __init__(self, causal_lm, tokenizer, dim: int, max_length: int, seed: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"lrhp.dim must be >= 2, got {dim}")
        self.causal_lm, self.tokenizer = causal_lm, tokenizer
        self.pair_id = add_pair_token(causal_lm, tokenizer)
        hidden = int(causal_lm.config.hidden_size)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(seed)
            self.projection = nn.Linear(hidden, int(dim))
            self.pref_head = nn.Linear(int(dim), 1)
        self.dim, self.max_length = int(dim), int(max_length)
        pair_ids(tokenizer, self.pair_id, "", "", "", self.max_length)  # fails early if the template cannot fit
        self.pad_id = pad_id_of(tokenizer)

    def ids(self, prompt: str, a: str, b: str) -> list[int]:
        return pair_ids(self.tokenizer, self.pair_id, prompt, a, b, self.max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised pair vectors ``[n, dim]`` read at each row's last real token (the ``<pair>`` token)."""
        h = last_hidden(self.causal_lm, input_ids, attention_mask)
        return F.normalize(self.projection(h.to(self.projection.weight.dtype)).float(), dim=-1)

    def first_preferred_logit(self, z: torch.Tensor) -> torch.Tensor:
        """Logit that response A (the first one) is the preferred one, ``[n]``."""
        return self.pref_head(z).squeeze(-1)

    @torch.no_grad()
    def embed(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str],
              batch_size: int = 32) -> torch.Tensor:
        """Vectors ``[n, dim]`` of the pairs (prompt, first, second), eval mode, length-sorted batches."""
        if not len(prompts) == len(first) == len(second):
            raise ValueError("prompts, first and second must have equal length")
        if not len(prompts):
            return torch.zeros(0, self.dim)
        seqs = [self.ids(p, a, b) for p, a, b in zip(prompts, first, second)]
        return map_sorted_eval(self, seqs, batch_size, self.pad_id)

    def embed_records(self, records: Sequence[dict], batch_size: int = 32) -> torch.Tensor:
        """Vectors of preference records in their canonical order (prompt, chosen, rejected)."""
        return self.embed([r["prompt"] for r in records], [r["chosen"] for r in records],
                          [r["rejected"] for r in records], batch_size)

    def save(self, out_dir: str) -> None:
        """Backbone + tokenizer (``save_pretrained``, safetensors), heads, and ``lrhp_config.json``."""
        save_causal_lm(self.causal_lm, self.tokenizer, out_dir)
        out = Path(out_dir)
        tensors = {f"projection.{k}": v.detach().contiguous() for k, v in self.projection.state_dict().items()}
        tensors.update({f"pref_head.{k}": v.detach().contiguous() for k, v in self.pref_head.state_dict().items()})
        save_file(tensors, str(out / HEADS_NAME))
        cfg = {"kind": "lrhp", "format_version": FORMAT_VERSION, "dim": self.dim, "max_length": self.max_length,
               "hidden_size": self.projection.in_features, "pair_token": PAIR_TOKEN}
        (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PairEncoder":
        """A saved encoder in eval mode; a folder that is not one raises naming the missing file."""
        from pipelines.models.tokenizer import load_tokenizer

        p = Path(path)
        for name in (CONFIG_NAME, HEADS_NAME):
            if not (p / name).is_file():
                raise FileNotFoundError(f"{p}: no {name}; not a saved LRHP pair encoder")
        cfg = json.loads((p / CONFIG_NAME).read_text())
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{p / CONFIG_NAME}: format {cfg.get('format_version')!r} != {FORMAT_VERSION!r}")
        model = cls(load_causal_lm(str(p)), load_tokenizer(str(p)), int(cfg["dim"]), int(cfg["max_length"]))
        heads = load_file(str(p / HEADS_NAME))
        model.projection.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith("projection.")})
        model.pref_head.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items() if k.startswith("pref_head.")})
        return model.eval()
