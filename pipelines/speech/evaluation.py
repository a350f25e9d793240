"""Evaluating speech-translation models: batched decoding, sacreBLEU with a bootstrap interval,
transcript error rates of the source CTC, and decoding-speed measurement.

BLEU is sacreBLEU's corpus BLEU on detokenised, case-sensitive text with its default 13a
tokeniser, one reference per sentence. The 95% interval resamples sentences with replacement and
recomputes corpus BLEU from the resampled sentences' summed n-gram statistics (the same numbers
`corpus_score` sums), so the point estimate is exactly sacreBLEU's.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from sacrebleu.metrics import BLEU

from pipelines.evaluation.bootstrap import indexed_statistic_ci
from pipelines.training.distributed import gather, shard

# ----------------------------------------------------------------------------- BLEU


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """(BLEU, sacreBLEU signature string) of detokenised hypotheses against one reference each."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    metric = BLEU()
    return float(metric.corpus_score(list(hyps), [list(refs)]).score), str(metric.get_signature())


def sentence_stats(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """(N, 2 * 4 + 2) int array per sentence: matching n-grams (1..4), hypothesis n-grams, hyp length,
    reference length: the sufficient statistics corpus BLEU sums over sentences."""
    metric = BLEU()
    rows = []
    for h, r in zip(hyps, refs):
        s = metric.corpus_score([h], [[r]])
        rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), 2 * metric.max_ngram_order + 2)


def bleu_from_stats(stats: np.ndarray) -> float:
    """Corpus BLEU (sacreBLEU's default exponential smoothing) of summed sentence statistics."""
    metric = BLEU()
    n = metric.max_ngram_order
    total = stats.sum(axis=0) if stats.ndim == 2 else stats
    score = BLEU.compute_bleu([int(x) for x in total[:n]], [int(x) for x in total[n:2 * n]], int(total[2 * n]),
                              int(total[2 * n + 1]), smooth_method=metric.smooth_method,
                              smooth_value=metric.smooth_value, effective_order=metric.effective_order,
                              max_ngram_order=n)
    return float(score.score)


def bootstrap_bleu(hyps: Sequence[str], refs: Sequence[str], n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """(BLEU, low, high): BCa bootstrap over sentences of corpus BLEU (sentence n-gram statistics resampled)."""
    if not hyps:
        raise ValueError("bootstrap_bleu needs at least one sentence")
    stats = sentence_stats(hyps, refs)
    return indexed_statistic_ci(len(hyps), lambda i: bleu_from_stats(stats[i]), n_resamples, seed, confidence)


# ----------------------------------------------------------------------------- error rates


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (substitution, insertion, deletion cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def error_rate(hyps: Sequence[str], refs: Sequence[str], unit: str = "word") -> float:
    """Corpus WER ("word", whitespace tokens) or CER ("char"): total edits / total reference units."""
    split = str.split if unit == "word" else list
    edits = sum(edit_distance(split(h), split(r)) for h, r in zip(hyps, refs))
    return edits / max(1, sum(len(split(r)) for r in refs))


# ----------------------------------------------------------------------------- batched decoding


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (longest first) and cut into batches: little padding at inference."""
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def stack(features: Sequence[np.ndarray], idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T, n_mels) features of `idx` and their lengths."""
    feats = [torch.as_tensor(np.asarray(features[i]), dtype=torch.float32) for i in idx]
    lengths = torch.tensor([len(f) for f in feats])
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths


def decode(fn: Callable[[torch.Tensor, torch.Tensor], list[list[int]]], features: Sequence[np.ndarray],
           batch_size: int = 32) -> list[list[int]]:
    """`fn(feats, lengths) -> ids per utterance` over all `features`, length-batched, in input order.

    Under several ranks each rank decodes a contiguous block of the same length batches and every
    rank gets all hypotheses back: decoding is deterministic, so the result does not depend on the
    number of ranks."""
    out: list[list[int] | None] = [None] * len(features)
    decoded = []
    with torch.inference_mode():
        for idx in shard(length_batches([len(f) for f in features], batch_size)):
            decoded += [(i, list(ids)) for i, ids in zip(idx, fn(*stack(features, idx)))]
    for i, ids in gather(decoded):
        out[i] = ids
    return out  # type: ignore[return-value]


def decoders(model, beam_size: int = 5, max_len_ratio: float | None = None) -> dict[str, Callable]:
    """The decoding methods of a trained model by name: NAST `greedy` (CTC); AR `greedy` and `beam`.

    AR stops at eos; its length cap defaults to the encoder length (NAST's ceiling too)."""
    if model.kind == "nast":
        return {"greedy": lambda f, n: model.decode(f, n)}
    return {"greedy": lambda f, n: model.greedy_decode(f, n),
            "beam": lambda f, n: model.beam_search(f, n, beam_size=beam_size)}


def source_ctc_decode(model, feats: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Greedy CTC transcripts from the acoustic encoder's top source-CTC head (empty if it has none)."""
    from pipelines.speech.models.ctc import greedy_decode

    enc = model(feats, lengths, tgt_ctc=False)
    top = len(model.encoder.acoustic.layers)
    if top not in enc.src_logits:
        return [[] for _ in range(feats.size(0))]
    logits = enc.src_logits[top]
    logits[..., [model.special_ids[k] for k in ("pad", "bos", "eos")]] = float("-inf")
    return greedy_decode(logits, enc.lengths)


# ----------------------------------------------------------------------------- speed


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_seconds(fn: Callable[[], object], warmup: int = 1, repeats: int = 5, device: str = "cpu") -> float:
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed runs (CUDA synchronised)."""
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_decoding(methods: dict[str, Callable], features: Sequence[np.ndarray], batch_sizes: Sequence[int],
                     threads: int = 1, warmup: int = 1, repeats: int = 3) -> list[dict]:
    """Time each method decoding all of `features` at each batch size, in one process.

    A measurement is one full pass over the utterances in length-sorted batches (features already in
    memory, encoder included), the median over `repeats` passes after `warmup` passes, with
    `threads` torch threads. Rows: batch, method, seconds (per pass), ms_per_utt, utterances."""
    rows = []
    with torch_threads(threads), torch.inference_mode():
        for bsz in batch_sizes:
            batches = [stack(features, idx) for idx in length_batches([len(f) for f in features], bsz)]
            for name, fn in methods.items():
                sec = median_seconds(lambda: [fn(f, n) for f, n in batches], warmup, repeats)
                rows.append({"batch": int(bsz), "method": name, "seconds": sec,
                             "ms_per_utt": 1000.0 * sec / max(1, len(features)), "utterances": len(features)})
    return rows


def speedups(rows: Sequence[dict], baseline: str) -> dict[str, float]:
    """{"<method>@b<batch>": method time / baseline time} for every non-baseline row."""
    base = {r["batch"]: r["seconds"] for r in rows if r["method"] == baseline}
    return {f"{r['method']}@b{r['batch']}": r["seconds"] / base[r["batch"]]
            for r in rows if r["method"] != baseline and r["batch"] in base}
