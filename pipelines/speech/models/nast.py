"""NAST: decoder-free CTC-based non-autoregressive speech translation (Xu et al., ACL 2023,
arXiv 2305.17358). The translation is read off the textual encoder's top CTC in one pass.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.speech.models.ctc import ctc_loss, greedy_decode
from pipelines.speech.models.encoder import EncoderOutput, SpeechEncoder


def _mean(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(xs).mean()


class NAST(nn.Module):
    kind = "nast"

    def __init__(self, cfg: dict, vocab_size: int, special_ids: dict):
        super().__init__()
        self.cfg, self.vocab_size, self.special_ids = cfg, vocab_size, dict(special_ids)
        self.encoder = SpeechEncoder(cfg, vocab_size)

    def forward(self, features, feat_lengths, tgt_tokens=None, tgt_lengths=None, **heads) -> EncoderOutput:
        """The encoder output (see ``SpeechEncoder.forward``)."""
        return self.encoder(features, feat_lengths, tgt_tokens, tgt_lengths, **heads)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """CTC losses of a collated batch (see ``batching.collate``).

        Keys: ``src_ctc_top``, ``src_ctc_inter`` (mean over intermediate layers), ``tgt_ctc_top``,
        ``tgt_ctc_inter``, ``total`` (their weighted sum; source terms only if the batch has
        ``src_tokens``), and detached diagnostics ``tgt_infeasible`` (fraction of utterances with
        fewer frames than their target needs), ``src_infeasible``, ``curriculum_replaced`` (fraction
        of aligned target frames whose PAE input was replaced).
        """
        cfg = self.cfg
        enc = self(batch["features"], batch["feat_lengths"], batch["tgt_tokens"], batch["tgt_lengths"])
        out = side_losses(enc.tgt_logits, len(self.encoder.textual.layers), enc.lengths,
                          batch["tgt_tokens"], batch["tgt_lengths"], "tgt")
        total = cfg["ctc_weight_tgt_top"] * out["tgt_ctc_top"]
        if "tgt_ctc_inter" in out:
            total = total + cfg["ctc_weight_tgt_inter"] * out["tgt_ctc_inter"]
        if batch.get("src_tokens") is not None:
            out.update(side_losses(enc.src_logits, len(self.encoder.acoustic.layers), enc.lengths,
                                   batch["src_tokens"], batch["src_lengths"], "src"))
            total = total + cfg["ctc_weight_src_top"] * out["src_ctc_top"]
            if "src_ctc_inter" in out:
                total = total + cfg["ctc_weight_src_inter"] * out["src_ctc_inter"]
        if enc.curriculum is not None:
            out["curriculum_replaced"] = torch.tensor(enc.curriculum["replaced"] / max(enc.curriculum["frames"], 1))
        out["total"] = total
        return out

    @torch.no_grad()
    def decode(self, features, feat_lengths) -> list[list[int]]:
        """Greedy CTC decoding of the textual top: one id list per utterance. pad/bos/eos never occur
        in CTC targets, so they are excluded from the argmax."""
        enc = self(features, feat_lengths, src_ctc=False)
        logits = enc.tgt_logits[len(self.encoder.textual.layers)]  # fresh tensor: mask in place
        logits[..., [self.special_ids[k] for k in ("pad", "bos", "eos")]] = float("-inf")
        return greedy_decode(logits, enc.lengths)


def side_losses(logits: dict, top: int, lengths, tokens, token_lengths, side: str) -> dict[str, torch.Tensor]:
    """Top and mean intermediate CTC loss of one side ('src' or 'tgt') plus its infeasible fraction."""
    out = {}
    loss, infeasible = ctc_loss(logits[top], lengths, tokens, token_lengths)
    out[f"{side}_ctc_top"], out[f"{side}_infeasible"] = loss, infeasible
    inter = [ctc_loss(v, lengths, tokens, token_lengths)[0] for k, v in logits.items() if k != top]
    if inter:
        out[f"{side}_ctc_inter"] = _mean(inter)
    return out
