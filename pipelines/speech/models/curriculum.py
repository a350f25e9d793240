"""Glancing-style curriculum for NAST's intermediate target-CTC layers.

Early in training the textual encoder's intermediate predictions are mostly wrong, so PAE would
feed noise upward. Where a frame's argmax disagrees with the best CTC alignment of the reference,
the distribution fed to PAE is replaced (with probability ``p``) by a smoothed one-hot of the
aligned token. As the model improves fewer frames disagree, so the help fades by itself.

It acts only through PAE (the replaced distribution is what PAE embeds; the CTC losses still see
the model's own logits), so config validation rejects ``curriculum`` without ``pae``. The
alignment comes from a no-grad pass of the same model (``SpeechEncoder.forward``).
"""

from __future__ import annotations

import torch


def glance(probs: torch.Tensor, aligned: torch.Tensor, p: float, smoothing: float) -> tuple[torch.Tensor, dict]:
    """Replace mismatched frames of ``probs`` (B, T, V) by smoothed one-hots of ``aligned`` (B, T).

    ``aligned`` holds the aligned token per frame, -1 where there is none (padding, infeasible
    utterances); such frames are left alone. Returns the new distributions and counts
    (``frames`` with an alignment, ``mismatched``, ``replaced``) for logging and tests.
    """
    has = aligned >= 0
    mismatch = has & (probs.argmax(-1) != aligned)
    replace = mismatch & (torch.rand(aligned.shape, device=aligned.device) < p)
    n_vocab = probs.size(-1)
    target = torch.full_like(probs, smoothing / n_vocab)
    target.scatter_(-1, aligned.clamp(min=0)[..., None], 1.0 - smoothing + smoothing / n_vocab)
    out = torch.where(replace[..., None], target, probs)
    stats = {"frames": int(has.sum()), "mismatched": int(mismatch.sum()), "replaced": int(replace.sum())}
    return out, stats
