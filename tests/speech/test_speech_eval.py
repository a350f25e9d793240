"""BLEU with its bootstrap interval, error rates, batched decoding order and speed measurement."""
from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
import torch

from pipelines.speech import evaluation as ev
from pipelines.speech.models import build_model
from pipelines.speech.training import bucket_batches, collate_batch, make_examples

REFS = ["Heute sagte sie, dass die Studenten den Bären fingen.", "Der Hund schläft.",
        "Gestern sah der Mann den Hund.", "Weil er müde ist, geht er nach Hause.", "Das Kind liest ein Buch."]
HYPS = ["Heute sagt sie, dass die Studenten den Bären fangen.", "Der Hund schläft.",
        "Gestern sah ein Mann den Hund.", "Er geht nach Hause.", "Das Kind liest."]


def test_identical_hypotheses_score_100():
    score, signature = ev.corpus_bleu(REFS, REFS)
    assert score == pytest.approx(100.0)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert ev.bootstrap_bleu(REFS, REFS, 100)[1:] == pytest.approx((100.0, 100.0))


def test_bleu_matches_sacrebleu_and_is_case_sensitive():
    score, _ = ev.corpus_bleu(HYPS, REFS)
    assert score == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert ev.bleu_from_stats(ev.sentence_stats(HYPS, REFS)) == pytest.approx(score)
    assert ev.corpus_bleu([h.lower() for h in REFS], REFS)[0] < 100.0
    with pytest.raises(ValueError):
        ev.corpus_bleu(HYPS[:2], REFS)


def test_bootstrap_interval_contains_the_point_estimate():
    hyps, refs = HYPS * 8, REFS * 8
    point, low, high = ev.bootstrap_bleu(hyps, refs, n_resamples=300, seed=1)
    assert point == pytest.approx(ev.corpus_bleu(hyps, refs)[0])
    assert low < point < high
    assert ev.bootstrap_bleu(hyps, refs, 300, seed=1) == (point, low, high)  # seeded
    assert ev.bootstrap_bleu(hyps[:1], refs[:1], 300)[1:] == ev.bootstrap_bleu(hyps[:1], refs[:1], 300)[:2]


def test_error_rates():
    assert ev.edit_distance("kitten", "sitting") == 3
    assert ev.error_rate(["a b c"], ["a b c"]) == 0.0
    assert ev.error_rate(["a x c d"], ["a b c"]) == pytest.approx(2 / 3)
    assert ev.error_rate(["abd"], ["abc"], unit="char") == pytest.approx(1 / 3)


def test_decode_restores_input_order_and_batches_by_length():
    feats = [np.full((n, 2), n, np.float32) for n in (5, 9, 3, 7)]
    assert ev.length_batches([len(f) for f in feats], 2) == [[1, 3], [0, 2]]
    out = ev.decode(lambda f, n: [[int(x)] for x in n], feats, batch_size=3)
    assert out == [[5], [9], [3], [7]]


class _Seg:
    def __init__(self, en, tgt):
        self.en, self.tgt = en, tgt


class _Vocab:
    def encode(self, text):
        return [4 + (ord(c) % 8) for c in text]


def test_training_batches_group_similar_lengths():
    feats = [np.zeros((n, 80), np.float32) for n in (10, 50, 12, 48, 30, 11)]
    ex = make_examples(feats, [_Seg("ab", "cde")] * 6, _Vocab())
    batches = bucket_batches(ex, 2, seed=0, jitter=0.0)
    assert [[len(e["features"]) for e in b] for b in batches] == [[10, 11], [12, 30], [48, 50]]
    batch = collate_batch(pad_id=1)([batches[2]])
    assert batch["features"].shape == (2, 50, 80) and batch["tgt_lengths"].tolist() == [3, 3]
    assert batch["src_tokens"].shape == (2, 2)


def test_measure_decoding_gives_positive_times():
    special = {"pad": 1, "bos": 2, "eos": 3}
    tiny = {"n_mels": 80, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "subsample_channels": 32, "acoustic_layers": 2,
            "textual_layers": 2, "src_ctc_layers": [1], "tgt_ctc_layers": [1], "conv_kernel": 5}
    torch.manual_seed(0)
    nast = build_model("nast", tiny, 20, special).eval()
    ar_cfg = {**tiny, "decoder_layers": 1, "src_ctc_layers": [], "tgt_ctc_layers": []}
    ar = build_model("ar", ar_cfg, 20, special).eval()
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((n, 80)).astype(np.float32) for n in (60, 80, 70)]
    methods = {"nast_greedy": lambda f, n: nast.decode(f, n),
               "ar_greedy": lambda f, n: ar.greedy_decode(f, n, max_len=4),
               "ar_beam": lambda f, n: ar.beam_search(f, n, beam_size=2, max_len=4)}
    before = torch.get_num_threads()
    rows = ev.measure_decoding(methods, feats, [1, 3], threads=1, warmup=0, repeats=1)
    assert torch.get_num_threads() == before
    assert [(r["batch"], r["method"]) for r in rows] == [(b, m) for b in (1, 3) for m in methods]
    assert all(r["seconds"] > 0 and r["ms_per_utt"] > 0 and r["utterances"] == 3 for r in rows)
    speed = ev.speedups(rows, "nast_greedy")
    assert set(speed) == {"ar_greedy@b1", "ar_beam@b1", "ar_greedy@b3", "ar_beam@b3"}
    assert all(v > 0 for v in speed.values())


def test_paired_bleu_test_separates_a_better_system_from_noise():
    """Fails if the NAST-vs-AR test stopped pairing sentences (same systems must give p near 1) or lost its power."""
    from pipelines.speech.comparison import paired_bleu_test

    refs = REFS * 8
    rows = lambda hyps: [{"id": f"s{i}", "ref": r, "greedy": h, "beam": h} for i, (r, h) in enumerate(zip(refs, hyps))]
    worse = [" ".join(h.split()[:2]) for h in HYPS]
    # equal quality, different sentences: each system is better on half of the corpus
    mixed = paired_bleu_test(rows(HYPS * 4 + worse * 4), rows(worse * 4 + HYPS * 4), trials=200)
    assert mixed["paired/nast_minus_ar_greedy"] == 0.0 and mixed["paired/nast_vs_ar_greedy_p_value"] > 0.5
    better = paired_bleu_test(rows(HYPS * 8), rows(worse * 8), trials=200)
    assert better["paired/nast_minus_ar_beam"] > 20 and better["paired/nast_vs_ar_beam_p_value"] < 0.05
    with pytest.raises(ValueError, match="different test sentences"):
        paired_bleu_test(rows(HYPS * 8), rows(HYPS * 8)[1:], trials=10)
