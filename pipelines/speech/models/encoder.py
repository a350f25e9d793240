"""The speech encoder shared by NAST and the AR baseline: acoustic encoder (source CTC) followed
by a textual encoder (target CTC), with intermediate CTC, prediction-aware encoding (PAE),
cross-layer attention and the glancing curriculum as config switches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.speech.models.conformer import ConformerLayer, TransformerLayer
from pipelines.speech.models.ctc import viterbi_align
from pipelines.speech.models.curriculum import glance
from pipelines.speech.models.subsampling import Conv1dSubsampler, SinusoidalPositions, padding_mask


@dataclass
class EncoderOutput:
    """``out``: textual top (B, T', d), LayerNorm-ed (the AR decoder's memory); ``acoustic``: acoustic
    top; ``lengths`` valid frames after subsampling; ``pad_mask`` True at padding; ``*_logits``: CTC
    logits by 1-based layer index, the top layer's under the layer count; ``curriculum``: glancing
    counts summed over layers (None when the curriculum did not run)."""

    out: torch.Tensor
    acoustic: torch.Tensor
    lengths: torch.Tensor
    pad_mask: torch.Tensor
    src_logits: dict[int, torch.Tensor] = field(default_factory=dict)
    tgt_logits: dict[int, torch.Tensor] = field(default_factory=dict)
    curriculum: dict | None = None


class InterCTC(nn.Module):
    """Intermediate CTC: LayerNorm, the stack's shared CTC projection, and with PAE
    ``h <- LN(h) + softmax(logits) @ E`` so upper layers see what this layer predicts.
    Without PAE the stream still becomes ``LN(h)``: the ablation removes only the E term."""

    def __init__(self, d_model: int, vocab_size: int, pae: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pae_embed = nn.Parameter(torch.randn(vocab_size, d_model) * d_model**-0.5) if pae else None

    def forward(self, h, proj, aligned=None, p=0.0, smoothing=0.0, want_logits=True):
        h = self.norm(h)
        if self.pae_embed is None:  # logits only feed the loss
            return h, proj(h) if want_logits else None, None
        logits, stats = proj(h), None
        probs = F.softmax(logits, dim=-1)
        if aligned is not None:
            probs, stats = glance(probs, aligned, p, smoothing)
        return h + probs @ self.pae_embed, logits, stats


class CTCStack(nn.Module):
    """Layers with intermediate CTC heads after ``inter_layers`` and one on top (all sharing one
    projection); ``cross_from=k`` hands layer k's output to the layers that attend to it."""

    def __init__(self, layers, d_model, vocab_size, inter_layers, pae, ctc_head=True, cross_from=None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = nn.LayerNorm(d_model)
        self.ctc_proj = nn.Linear(d_model, vocab_size) if ctc_head else None
        if inter_layers and not ctc_head:
            raise ValueError("intermediate CTC layers need a CTC head")
        self.inter = nn.ModuleDict({str(i): InterCTC(d_model, vocab_size, pae) for i in inter_layers})
        self.cross_from = cross_from

    def forward(self, h, pad_mask, aligned=None, p=0.0, smoothing=0.0, ctc=True):
        """``ctc=False``: skip CTC logits that only losses need (the top, and intermediate ones
        without PAE); vocabulary-sized matmuls dominate a small encoder's decoding cost."""
        logits, totals, saved = {}, None, None
        for i, layer in enumerate(self.layers, start=1):
            h = layer(h, pad_mask, cross=saved)
            if str(i) in self.inter:
                h, inter_logits, stats = self.inter[str(i)](h, self.ctc_proj, aligned, p, smoothing, ctc)
                if inter_logits is not None:
                    logits[i] = inter_logits
                if stats is not None:
                    totals = stats if totals is None else {k: totals[k] + stats[k] for k in stats}
            if i == self.cross_from:
                saved = h
        h = self.final_norm(h)
        if self.ctc_proj is not None and ctc:
            logits[len(self.layers)] = self.ctc_proj(h)
        return h, logits, totals


class SpeechEncoder(nn.Module):
    """fbank (B, T, n_mels) -> 4x subsampling + positions -> acoustic stack (source CTC) ->
    textual stack (target CTC, no positional embedding)."""

    def __init__(self, cfg: dict, vocab_size: int, src_head: bool = True, tgt_head: bool = True):
        super().__init__()
        d, h, f, drop = cfg["d_model"], cfg["n_heads"], cfg["ffn_dim"], cfg["dropout"]
        self.cfg = cfg
        self.subsample = Conv1dSubsampler(cfg["n_mels"], cfg["subsample_channels"], d, cfg["subsample_kernel"])
        self.positions = SinusoidalPositions(d, cfg["max_source_positions"])
        self.scale, self.drop = math.sqrt(d), nn.Dropout(drop)
        if cfg["acoustic_type"] == "conformer":
            acoustic = [ConformerLayer(d, h, f, cfg["conv_kernel"], drop) for _ in range(cfg["acoustic_layers"])]
        else:
            acoustic = [TransformerLayer(d, h, f, drop) for _ in range(cfg["acoustic_layers"])]
        self.acoustic = CTCStack(acoustic, d, vocab_size, cfg["src_ctc_layers"], cfg["pae"], src_head)
        k = cfg["cross_layer_from"] if cfg["cross_layer"] else None
        textual = [
            TransformerLayer(d, h, f, drop, cross=k is not None and i > k, self_attn_drop=cfg["self_attn_drop"])
            for i in range(1, cfg["textual_layers"] + 1)
        ]
        self.textual = CTCStack(textual, d, vocab_size, cfg["tgt_ctc_layers"], cfg["pae"], tgt_head, cross_from=k)

    def _encode(self, features, feat_lengths, aligned=None, src_ctc=True, tgt_ctc=True) -> EncoderOutput:
        x, lengths = self.subsample(features, feat_lengths)
        pad_mask = padding_mask(lengths, x.size(1))
        x = self.drop(self.scale * x + self.positions(x.size(1)))
        acoustic, src_logits, _ = self.acoustic(x, pad_mask, ctc=src_ctc)
        p, s = self.cfg["curriculum_p"], self.cfg["curriculum_smoothing"]
        out, tgt_logits, stats = self.textual(acoustic, pad_mask, aligned, p, s, ctc=tgt_ctc)
        return EncoderOutput(out, acoustic, lengths, pad_mask, src_logits, tgt_logits, stats)

    def forward(self, features, feat_lengths, tgt_tokens=None, tgt_lengths=None,
                src_ctc: bool = True, tgt_ctc: bool = True) -> EncoderOutput:
        """Targets are only used by the curriculum (training mode, ``curriculum`` on): a no-grad
        pass aligns them to the top target-CTC predictions, then the real pass glances.
        ``src_ctc``/``tgt_ctc`` False: that side's CTC logits are not wanted (decoding), so only
        those PAE needs are computed."""
        aligned = None
        if self.training and self.cfg["curriculum"] and tgt_tokens is not None and len(self.textual.inter):
            with torch.no_grad():
                first = self._encode(features, feat_lengths, src_ctc=False)
                top = first.tgt_logits[len(self.textual.layers)]
                aligned, _, _ = viterbi_align(F.log_softmax(top.float(), -1), first.lengths, tgt_tokens, tgt_lengths)
        return self._encode(features, feat_lengths, aligned, src_ctc, tgt_ctc)
