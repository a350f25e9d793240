"""Scoring a trained speech-translation model: dev loss during training, tst-COMMON BLEU and WER after.

BLEU is sacreBLEU (detokenised, case-sensitive, 13a) with a sentence-bootstrap 95% interval; the
model's main decoding is CTC greedy for NAST and beam search for AR. The source-CTC head gives
transcript WER/CER. Decoding times are returned apart: they describe the machine, not the model.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

from pipelines.speech import evaluation as ev
from pipelines.speech.models import collate

MAIN_DECODING = {"nast": "greedy", "ar": "beam"}


def dev_loss(model, examples: list[dict], pad_id: int, batch_size: int) -> dict:
    """Mean total loss and its main parts on the dev split (length-batched, no gradients)."""
    sums, n = {}, 0
    with torch.no_grad():
        for idx in ev.length_batches([len(e["features"]) for e in examples], batch_size):
            out = model.loss(collate([examples[i] for i in idx], pad_id))
            for k in ("total", "tgt_ctc_top", "src_ctc_top", "nll"):
                if k in out:
                    sums[k] = sums.get(k, 0.0) + float(out[k]) * len(idx)
            n += len(idx)
    return {("loss" if k == "total" else k): v / n for k, v in sums.items()}


def dev_scores(model, examples: list[dict], references: Sequence[str], vocab, batch_size: int) -> dict:
    """Dev loss plus dev BLEU of greedy decoding (NAST: CTC, AR: greedy, both cheap): the BLEU-by-step curve.

    Greedy decoding uses no randomness, so evaluating during training leaves the trained weights unchanged
    (the training loop calls this in eval mode without gradients)."""
    scores = dev_loss(model, examples, vocab.pad_id, batch_size)
    decode = ev.decoders(model)["greedy"]
    hyps = [vocab.decode(ids) for ids in ev.decode(decode, [e["features"] for e in examples], batch_size)]
    scores["bleu"] = ev.corpus_bleu(hyps, list(references))[0]
    return scores


def bleu_block(hyps: list[str], refs: list[str], n_boot: int, seed: int) -> dict:
    score, low, high = ev.bootstrap_bleu(hyps, refs, n_boot, seed)
    return {"bleu": round(score, 2), "ci95": [round(low, 2), round(high, 2)]}


def score_on_test(model, kind: str, vocab, segments: Sequence, examples: Sequence[dict], *, batch_size: int,
                  beam_size: int, n_boot: int, seed: int) -> dict:
    """Decode the test split every way the model can; returns hypotheses, scores, metrics and timings.

    Keys: `decoded` ({method: [hyp]}), `transcripts` (source CTC), `main` (the headline decoding),
    `scores` ({method: {bleu, ci95}}), `metrics` (what metrics.json reports about the test set) and
    `decode_seconds` ({method: seconds}, a machine fact).
    """
    refs = [s.tgt for s in segments]
    feats = [e["features"] for e in examples]
    decoded, timing = {}, {}
    for method, fn in ev.decoders(model, beam_size=beam_size).items():
        start = time.perf_counter()
        decoded[method] = [vocab.decode(ids) for ids in ev.decode(fn, feats, batch_size)]
        timing[method] = round(time.perf_counter() - start, 3)
    scores = {m: bleu_block(h, refs, n_boot, seed) for m, h in decoded.items()}
    main = MAIN_DECODING[kind]
    _, signature = ev.corpus_bleu(decoded[main], refs)
    transcripts = [vocab.decode(ids) for ids in ev.decode(lambda f, n: ev.source_ctc_decode(model, f, n),
                                                           feats, batch_size)]
    english = [s.en for s in segments]
    metrics = {
        "kind": kind,
        "decoding": main if kind == "ar" else "ctc_greedy",
        "bleu": scores[main]["bleu"], "bleu_ci95": scores[main]["ci95"],
        **{f"bleu/{m}": s["bleu"] for m, s in scores.items()},
        **{f"bleu/{m}_ci95": s["ci95"] for m, s in scores.items()},
        "bleu_signature": signature,
        "bleu_bootstrap": n_boot,
        "src_wer": round(ev.error_rate(transcripts, english, "word"), 4),
        "src_cer": round(ev.error_rate(transcripts, english, "char"), 4),
        "hyp_len_ratio": round(sum(len(h.split()) for h in decoded[main])
                               / max(1, sum(len(r.split()) for r in refs)), 4),
        "empty_hyps": sum(not h.strip() for h in decoded[main]),
        "test_sentences": len(refs),
    }
    return {"decoded": decoded, "transcripts": transcripts, "main": main, "scores": scores, "metrics": metrics,
            "decode_seconds": timing}


def hypothesis_rows(segments: Sequence, transcripts: list[str], decoded: dict) -> list[dict]:
    """hyps.jsonl rows: id, English, reference, source-CTC transcript and every decoding."""
    return [{"id": s.id, "en": s.en, "ref": s.tgt, "src_ctc": t, **{m: decoded[m][i] for m in decoded}}
            for i, (s, t) in enumerate(zip(segments, transcripts))]
