"""Collate variable-length utterances into padded tensors (padding masks derive from lengths)."""

from __future__ import annotations

from typing import Sequence

import torch

from pipelines.speech.models.subsampling import padding_mask


def _pad(seqs: list[torch.Tensor], value) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=value)


def collate(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Examples with ``features`` (T, n_mels) float, ``tgt_ids`` and optionally ``src_ids``
    (sequences of ints, no bos/eos) -> ``features`` (B, T_max, n_mels) zero-padded,
    ``feat_lengths``, ``feat_mask`` (B, T_max) True at padding, ``tgt_tokens`` (B, L_max)
    ``pad_id``-padded, ``tgt_lengths`` and, when every example has ``src_ids``, ``src_tokens`` /
    ``src_lengths``. Models take lengths and rebuild the mask after subsampling."""
    feats = [torch.as_tensor(e["features"], dtype=torch.float32) for e in examples]
    lengths = torch.tensor([len(f) for f in feats])
    batch = {"features": _pad(feats, 0.0), "feat_lengths": lengths, "feat_mask": padding_mask(lengths)}
    sides = [("tgt", "tgt_ids")] + ([("src", "src_ids")] if all("src_ids" in e for e in examples) else [])
    for side, key in sides:
        ids = [torch.as_tensor(list(e[key]), dtype=torch.long) for e in examples]
        batch[f"{side}_tokens"] = _pad(ids, pad_id)
        batch[f"{side}_lengths"] = torch.tensor([len(i) for i in ids])
    return batch
