"""Autoregressive baseline: NAST's acoustic + textual encoders, a causal Transformer decoder over
the textual encoder's output, label-smoothed cross-entropy plus an auxiliary CTC.

The auxiliary CTC (``ar_ctc``, default "both", weight ``ar_ctc_weight`` = 0.2) is the source-
transcript CTC on the acoustic encoder top plus NAST's target CTC on the textual encoder top, the
memory the decoder attends to. Without a loss on that memory ("source" alone) it collapses early in
training: the decoder's first, input-independent signal (the target unigram prior, the same for every
frame) is turned by Adam into a frame-constant component of the textual residual stream that grows
~10x in ~20 steps, and the final LayerNorm then scales the frame-varying part away (memory spread
0.72 -> 0.015). Cross-attention goes uniform, the decoder becomes a language model and greedy
decoding gives one sentence for every input; the encoder below still learns (source WER is fine).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.speech.models.decoder import TransformerDecoder, reorder_caches
from pipelines.speech.models.encoder import EncoderOutput, SpeechEncoder
from pipelines.speech.models.nast import side_losses


def shift_targets(tokens, lengths, bos: int, eos: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input ``bos y`` and output ``y eos``, both (B, L+1) padded with ``pad``."""
    b, l = tokens.shape
    inside = torch.arange(l, device=tokens.device)[None, :] < lengths[:, None]
    y = tokens.masked_fill(~inside, pad)
    prev = torch.cat([torch.full((b, 1), bos, dtype=y.dtype, device=y.device), y], dim=1)
    out = torch.cat([y, torch.full((b, 1), pad, dtype=y.dtype, device=y.device)], dim=1)
    out.scatter_(1, lengths[:, None], eos)
    return prev, out


def _beam_done(finished: list[tuple[float, list[int]]], k: int, best_live: float) -> bool:
    """k hypotheses finished, and the best live one (normalised at its current length) cannot enter
    the k best of them: the stopping rule of Hugging Face's beam scorer (early_stopping=False)."""
    if len(finished) < k:
        return False
    kth = sorted((score for score, _ in finished), reverse=True)[k - 1]
    return not best_live > kth


class ARST(nn.Module):
    kind = "ar"

    def __init__(self, cfg: dict, vocab_size: int, special_ids: dict):
        super().__init__()
        self.cfg, self.vocab_size, self.special_ids = cfg, vocab_size, dict(special_ids)
        self.pad, self.bos, self.eos = special_ids["pad"], special_ids["bos"], special_ids["eos"]
        aux = cfg["ar_ctc"]
        self.encoder = SpeechEncoder(
            cfg, vocab_size,
            src_head=aux in ("source", "both") or bool(cfg["src_ctc_layers"]),
            tgt_head=aux in ("target", "both") or bool(cfg["tgt_ctc_layers"]),
        )
        self.decoder = TransformerDecoder(cfg, vocab_size, self.pad)

    def forward(self, features, feat_lengths, tgt_tokens=None, tgt_lengths=None, **heads) -> EncoderOutput:
        """The encoder pass (the decoder runs in ``loss`` and the decoding methods)."""
        return self.encoder(features, feat_lengths, tgt_tokens, tgt_lengths, **heads)

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Keys: ``ce`` (label-smoothed, per target token incl. eos), ``nll`` (unsmoothed, detached),
        the auxiliary CTC terms named as in NAST (``src_ctc_top`` ...), ``aux_ctc`` and
        ``total`` = ce + ar_ctc_weight * aux_ctc."""
        cfg = self.cfg
        enc = self(batch["features"], batch["feat_lengths"], batch["tgt_tokens"], batch["tgt_lengths"])
        prev, gold = shift_targets(batch["tgt_tokens"], batch["tgt_lengths"], self.bos, self.eos, self.pad)
        logits = self.decoder(prev, self.decoder.project_memory(enc.out), enc.pad_mask).float()
        flat, gold = logits.view(-1, logits.size(-1)), gold.view(-1)
        out = {
            "ce": F.cross_entropy(flat, gold, ignore_index=self.pad, label_smoothing=cfg["label_smoothing"]),
            "nll": F.cross_entropy(flat.detach(), gold, ignore_index=self.pad),
        }
        aux = torch.zeros((), device=logits.device)
        if cfg["ar_ctc"] in ("source", "both") and batch.get("src_tokens") is not None:
            out.update(side_losses(enc.src_logits, len(self.encoder.acoustic.layers), enc.lengths,
                                   batch["src_tokens"], batch["src_lengths"], "src"))
            aux = aux + cfg["ctc_weight_src_top"] * out["src_ctc_top"]
            aux = aux + cfg["ctc_weight_src_inter"] * out.get("src_ctc_inter", 0.0)
        if cfg["ar_ctc"] in ("target", "both"):
            out.update(side_losses(enc.tgt_logits, len(self.encoder.textual.layers), enc.lengths,
                                   batch["tgt_tokens"], batch["tgt_lengths"], "tgt"))
            aux = aux + cfg["ctc_weight_tgt_top"] * out["tgt_ctc_top"]
            aux = aux + cfg["ctc_weight_tgt_inter"] * out.get("tgt_ctc_inter", 0.0)
        out["aux_ctc"] = aux
        out["total"] = out["ce"] + cfg["ar_ctc_weight"] * aux
        return out

    def _start(self, features, feat_lengths, max_len, expand: int = 1):
        enc = self(features, feat_lengths, src_ctc=False, tgt_ctc=False)
        if max_len is None:  # as long as the encoder output (NAST's ceiling too), within the table
            max_len = int(enc.lengths.max())
        max_len = min(max_len, self.cfg["max_target_positions"] - 1)
        memory_kv, pad_mask = self.decoder.project_memory(enc.out), enc.pad_mask
        if expand > 1:  # one copy per hypothesis, projected once per utterance
            memory_kv = [(k.repeat_interleave(expand, 0), v.repeat_interleave(expand, 0)) for k, v in memory_kv]
            pad_mask = pad_mask.repeat_interleave(expand, 0)
        caches = [dict() for _ in self.decoder.layers]
        return memory_kv, pad_mask, caches, max_len

    def _step(self, last, memory_kv, pad_mask, caches, step: int, min_len: int) -> torch.Tensor:
        logp = F.log_softmax(self.decoder(last, memory_kv, pad_mask, caches, offset=step)[:, -1].float(), dim=-1)
        logp[:, [self.special_ids["blank"], self.pad, self.bos]] = float("-inf")  # never outputs
        if step < min_len:
            logp[:, self.eos] = float("-inf")
        return logp

    @torch.no_grad()
    def greedy_decode(self, features, feat_lengths, max_len: int | None = None, min_len: int = 0) -> list[list[int]]:
        """Argmax decoding with cached states; at most ``max_len`` tokens (eos excluded), eos banned
        before ``min_len`` (``min_len=max_len`` forces exactly max_len steps, for timing)."""
        memory_kv, pad_mask, caches, max_len = self._start(features, feat_lengths, max_len)
        b = features.size(0)
        last = torch.full((b, 1), self.bos, dtype=torch.long, device=features.device)
        done = torch.zeros(b, dtype=torch.bool, device=features.device)
        out = []
        for step in range(max_len):
            nxt = self._step(last, memory_kv, pad_mask, caches, step, min_len).argmax(-1)
            out.append(nxt.masked_fill(done, self.eos))
            done |= nxt == self.eos
            if done.all():
                break
            last = nxt[:, None]
        rows = torch.stack(out, 1).tolist() if out else [[] for _ in range(b)]
        return [row[: row.index(self.eos)] if self.eos in row else row for row in rows]

    @torch.no_grad()
    def beam_search(self, features, feat_lengths, beam_size: int = 5, max_len: int | None = None,
                    min_len: int = 0, len_penalty: float = 1.0) -> list[list[int]]:
        """Batched beam search; a hypothesis' final score is logprob / (tokens incl. eos) ** len_penalty.

        Each step keeps the 2k best expansions: eos among the top k finishes a hypothesis, the k
        best others continue. A sentence stops once it has k finished hypotheses and none of its live
        ones, scored at its current length, beats the k-th best of them (beam 1 is greedy); at
        ``max_len`` the live beams are finished as they are. Stopping at k finished alone returned
        `a b d` with mean log-prob -1.15 for an overfit model whose greedy `a b c d` scores -0.10:
        a peaked model's junk beams finish early, before the good one reaches its eos.
        """
        k, b, dev = beam_size, features.size(0), features.device
        memory_kv, pad_mask, caches, max_len = self._start(features, feat_lengths, max_len, expand=k)
        scores = torch.full((b, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # one live hypothesis at first, or all k would be the same
        hist = torch.empty((b * k, 0), dtype=torch.long, device=dev)
        last = torch.full((b * k, 1), self.bos, dtype=torch.long, device=dev)
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        done = [False] * b
        rank = torch.arange(2 * k, device=dev)
        for step in range(max_len):
            logp = self._step(last, memory_kv, pad_mask, caches, step, min_len)
            vocab = logp.size(-1)
            cand = (scores.view(-1, 1) + logp).view(b, k * vocab)
            top_v, top_i = cand.topk(min(2 * k, k * vocab), dim=1)
            beam, tok = top_i // vocab, top_i % vocab
            is_eos = tok == self.eos
            fin = is_eos & (rank[None, : top_v.size(1)] < k) & torch.isfinite(top_v)
            norm = top_v / float(step + 1) ** len_penalty
            for s, j in fin.nonzero().tolist():
                if not done[s]:
                    finished[s].append((float(norm[s, j]), hist[s * k + int(beam[s, j])].tolist()))
            order = (is_eos.long() * (2 * k) + rank[None, : top_v.size(1)]).argsort(dim=1)[:, :k]
            scores = top_v.gather(1, order)
            best_live = (scores.max(dim=1).values / float(step + 1) ** len_penalty).tolist()
            done = [d or _beam_done(f, k, live) for d, f, live in zip(done, finished, best_live)]
            if all(done):
                break
            src = (torch.arange(b, device=dev)[:, None] * k + beam.gather(1, order)).view(-1)
            nxt = tok.gather(1, order).view(-1, 1)
            hist = torch.cat([hist[src], nxt], dim=1)
            reorder_caches(caches, src)
            last = nxt
        else:
            norm = scores / float(max_len + 1) ** len_penalty
            for s in range(b):
                if not done[s]:
                    finished[s] += [(float(norm[s, j]), hist[s * k + j].tolist())
                                    for j in range(k) if torch.isfinite(norm[s, j])]
        return [max(f, key=lambda x: x[0])[1] if f else [] for f in finished]

    def decode(self, features, feat_lengths, beam_size: int = 1, **kwargs) -> list[list[int]]:
        """Greedy for ``beam_size`` 1, beam search otherwise."""
        if beam_size == 1:
            return self.greedy_decode(features, feat_lengths, **kwargs)
        return self.beam_search(features, feat_lengths, beam_size=beam_size, **kwargs)
