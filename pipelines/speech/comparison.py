"""NAST against the AR baseline: the BLEU table (tracked) and the decoding-speed table (a machine fact).

Speed: the models decode the same utterances (fbank already in memory, encoder included,
length-sorted batches) at each batch size; AR stops at eos (free length), as in the BLEU runs.
Speed-up = AR time / NAST time. BLEU comes from the two training stages' metrics; whether NAST and
the AR baseline differ is sacreBLEU's paired approximate-randomization test on the hypotheses both stages wrote
(`hyps.jsonl`, same tst-COMMON sentences), not a comparison of two separate intervals.
"""
from __future__ import annotations

import platform

import torch

from pipelines.speech import evaluation as ev

METHODS = ("nast_greedy", "ar_greedy", "ar_beam")
BLEU_SOURCES = {"nast": ("nast", "greedy"), "ar_greedy": ("ar", "greedy"), "ar_beam": ("ar", "beam")}


def measure_speed(nast, ar, feats: list, batch_sizes: list[int], *, beam_size: int, threads: int, warmup: int,
                  repeats: int) -> tuple[list[dict], dict, dict]:
    """(rows of {batch, method, ms_per_utt}, speed-ups vs NAST greedy, the timing settings)."""
    methods = {
        "nast_greedy": lambda f, n: nast.decode(f, n),
        "ar_greedy": lambda f, n: ar.greedy_decode(f, n),
        "ar_beam": lambda f, n: ar.beam_search(f, n, beam_size=beam_size),
    }
    rows = ev.measure_decoding(methods, feats, batch_sizes, threads=threads, warmup=warmup, repeats=repeats)
    speed = ev.speedups(rows, "nast_greedy")
    settings = {"threads": threads, "utterances": len(feats), "repeats": repeats, "warmup": warmup,
                "beam_size": beam_size,
                "device": f"cpu, {platform.processor() or platform.machine()}, torch {torch.__version__}"}
    return rows, speed, settings


def bleu_table(metrics: dict) -> dict:
    """{row: (bleu, [low, high])} for NAST greedy, AR greedy, AR beam from {"nast": m, "ar": m} metrics."""
    return {row: (metrics[model][f"bleu/{d}"], metrics[model][f"bleu/{d}_ci95"])
            for row, (model, d) in BLEU_SOURCES.items()}


def paired_bleu_test(nast_rows: list[dict], ar_rows: list[dict], trials: int) -> dict:
    """NAST greedy against each AR decoding by sacreBLEU's paired approximate randomization (seeded by SACREBLEU_SEED).

    Rows are the two stages' `hyps.jsonl` (id, ref, one key per decoding); they must hold the same
    sentences. Metrics per AR decoding: the BLEU difference NAST - AR and the test's p-value (how often
    randomly swapping the two systems' outputs sentence by sentence gives a gap at least as large).
    Approximate randomization is sacreBLEU's default paired test; it keeps multeval's convention that a
    system tested against itself (a zero difference) is not attributed to chance (p = 1 / (trials + 1)).
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    if [r["id"] for r in nast_rows] != [r["id"] for r in ar_rows]:
        raise ValueError("NAST and AR hyps.jsonl hold different test sentences; rerun both training stages")
    refs = [[r["ref"] for r in ar_rows]]
    out: dict = {"paired/trials": trials}
    for decoding in ("greedy", "beam"):
        systems = [(f"ar_{decoding}", [r[decoding] for r in ar_rows]), ("nast", [r["greedy"] for r in nast_rows])]
        _, scores = PairedTest(systems, {"BLEU": BLEU()}, refs, test_type="ar", n_samples=trials)()
        base, nast = scores["BLEU"]
        out[f"paired/nast_minus_ar_{decoding}"] = round(nast.score - base.score, 3)
        out[f"paired/nast_vs_ar_{decoding}_p_value"] = round(float(nast.p_value), 4)
    return out


def bleu_markdown(nast_m: dict, ar_m: dict, beam_size: int, paired: dict | None = None) -> str:
    lines = ["# NAST vs autoregressive speech translation (tst-COMMON)", "",
             f"BLEU: sacreBLEU `{nast_m.get('bleu_signature', '')}`, 95% sentence-bootstrap intervals.", "",
             "| model | decoding | BLEU | 95% CI | params | train steps |", "|---|---|---|---|---|---|"]
    for label, m, key in (("NAST", nast_m, "greedy"), ("AR", ar_m, "greedy"), ("AR", ar_m, "beam")):
        name = "CTC greedy" if label == "NAST" else ("greedy" if key == "greedy" else f"beam {beam_size}")
        ci = m.get(f"bleu/{key}_ci95", ["n/a", "n/a"])
        lines.append(f"| {label} | {name} | {m.get(f'bleu/{key}')} | [{ci[0]}, {ci[1]}] | {m.get('params')} "
                     f"| {m.get('train_steps')} |")
    if paired:
        lines.append("")
    for decoding in ("greedy", "beam") if paired else ():
        lines.append(f"NAST - AR {decoding}: {paired[f'paired/nast_minus_ar_{decoding}']:+.2f} BLEU, paired approximate "
                     f"randomization p = {paired[f'paired/nast_vs_ar_{decoding}_p_value']:.4f} "
                     f"(sacreBLEU `PairedTest`, {paired['paired/trials']} trials).")
    lines += ["", "Decoding speed depends on the machine: see `reports/machine/st_compare/speed.md` "
              "(not tracked by DVC) or the stage's MLflow run.", ""]
    return "\n".join(lines)


def speed_markdown(rows: list[dict], speed: dict, settings: dict) -> str:
    lines = [f"# Decoding speed on {settings['utterances']} utterances, {settings['threads']} torch thread(s)", "",
             f"Median of {settings['repeats']} passes after {settings['warmup']} warm-up ({settings['device']}).", "",
             "| batch | method | ms / utterance | AR / NAST |", "|---|---|---|---|"]
    for r in rows:
        ratio = speed.get(f"{r['method']}@b{r['batch']}")
        shown = "1.00" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {r['batch']} | {r['method']} | {r['ms_per_utt']:.2f} | {shown} |")
    lines += ["", "Speed-ups (AR time / NAST time): " + ", ".join(f"{k} {v:.2f}x" for k, v in speed.items()), ""]
    return "\n".join(lines)
