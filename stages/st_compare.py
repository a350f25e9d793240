"""Stage `st_compare`: NAST against the AR baseline: decoding speed and BLEU, side by side.

Speed: the trained models decode the first `st.compare.n_utterances` tst-COMMON utterances (fbank
already in memory, encoder included, length-sorted batches) at each batch size, in one process with
`st.compare.threads` torch threads; each number is the median of `repeats` full passes after
`warmup` passes. AR stops at eos (free length), as in the BLEU runs. Speed-up = AR time / NAST time.
BLEU comes from the two training stages' metrics (same test set, same sacreBLEU signature).

Speed is a fact about the machine, not about the models: the tracked output (`models/st_compare/`:
BLEU table, plot and metrics) stays identical across machines, while the speed table
(`speed.md`), `speed.csv`, `speed.png` and the `speedup/...` and `ms_per_utt/...` figures go to
the untracked `reports/machine/st_compare/` and to MLflow.
"""
from __future__ import annotations

import json
import platform

import torch

from pipelines.atomic import write_text_atomic
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.evaluation.plots import plot_grouped_bars, write_csv
from pipelines.speech import evaluation as ev
from pipelines.speech.features import FeatureCache
from pipelines.speech.models import load_model
from stages.speech_common import TEST, features_path

METHODS = ("nast_greedy", "ar_greedy", "ar_beam")


def _load(ctx: StageContext, name: str):
    folder = ctx.root / "models" / name
    if not (folder / "metrics.json").is_file():
        raise ParamsError(f"{folder / 'metrics.json'}: missing; run the {name} stage first")
    return load_model(folder / "model"), json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _markdown(nast_m: dict, ar_m: dict, beam_size: int) -> str:
    lines = ["# NAST vs autoregressive speech translation (tst-COMMON)", "",
             f"BLEU: sacreBLEU `{nast_m.get('bleu_signature', '')}`, 95% sentence-bootstrap intervals.", "",
             "| model | decoding | BLEU | 95% CI | params | train steps |", "|---|---|---|---|---|---|"]
    for label, m, key in (("NAST", nast_m, "greedy"), ("AR", ar_m, "greedy"), ("AR", ar_m, "beam")):
        name = "CTC greedy" if label == "NAST" else ("greedy" if key == "greedy" else f"beam {beam_size}")
        ci = m.get(f"bleu/{key}_ci95", ["n/a", "n/a"])
        lines.append(f"| {label} | {name} | {m.get(f'bleu/{key}')} | [{ci[0]}, {ci[1]}] | {m.get('params')} "
                     f"| {m.get('train_steps')} |")
    lines += ["", "Decoding speed depends on the machine: see `reports/machine/st_compare/speed.md` "
              "(not tracked by DVC) or the stage's MLflow run.", ""]
    return "\n".join(lines)


def _speed_markdown(rows: list[dict], speed: dict, settings: dict) -> str:
    lines = [f"# Decoding speed on {settings['utterances']} utterances, {settings['threads']} torch thread(s)", "",
             f"Median of {settings['repeats']} passes after {settings['warmup']} warm-up ({settings['device']}).", "",
             "| batch | method | ms / utterance | AR / NAST |", "|---|---|---|---|"]
    for r in rows:
        ratio = speed.get(f"{r['method']}@b{r['batch']}")
        shown = "1.00" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {r['batch']} | {r['method']} | {r['ms_per_utt']:.2f} | {shown} |")
    lines += ["", "Speed-ups (AR time / NAST time): " + ", ".join(f"{k} {v:.2f}x" for k, v in speed.items()), ""]
    return "\n".join(lines)


def run(ctx: StageContext) -> None:
    st = ctx.block("st")
    p = st["compare"]
    beam = int(st["eval"]["beam_size"])
    nast, nast_m = _load(ctx, "st_nast")
    ar, ar_m = _load(ctx, "st_ar")
    path = features_path(ctx, TEST)
    if not path.is_file():
        raise ParamsError(f"{path}: missing; run the speech_features stage first")
    cache = FeatureCache(path)
    feats = [cache[i] for i in range(len(cache))]
    n_utts = p.get("n_utterances")
    feats = feats[: int(n_utts)] if n_utts else feats
    batch_sizes = [int(b) for b in p["batch_sizes"]]
    if not feats or not batch_sizes or min(batch_sizes) < 1:
        raise ParamsError("params.yaml: st.compare: need n_utterances >= 1 and batch sizes >= 1")
    methods = {
        "nast_greedy": lambda f, n: nast.decode(f, n),
        "ar_greedy": lambda f, n: ar.greedy_decode(f, n),
        "ar_beam": lambda f, n: ar.beam_search(f, n, beam_size=beam),
    }
    threads = int(p["threads"])
    rows = ev.measure_decoding(methods, feats, batch_sizes, threads=threads, warmup=int(p["warmup"]),
                               repeats=int(p["repeats"]))
    speed = ev.speedups(rows, "nast_greedy")
    settings = {"threads": threads, "utterances": len(feats), "repeats": int(p["repeats"]), "warmup": int(p["warmup"]),
                "beam_size": beam,
                "device": f"cpu, {platform.processor() or platform.machine()}, torch {torch.__version__}"}
    sources = {"nast": (nast_m, "greedy"), "ar_greedy": (ar_m, "greedy"), "ar_beam": (ar_m, "beam")}
    bleu = {k: m[f"bleu/{d}"] for k, (m, d) in sources.items()}

    out = ctx.output("models/st_compare")
    machine = ctx.machine_dir()
    ms = {(r["batch"], r["method"]): round(r["ms_per_utt"], 3) for r in rows}
    write_csv([{"batch": b, **{m: ms[b, m] for m in METHODS}} for b in batch_sizes], machine / "speed.csv",
              ["batch", *METHODS])
    plot_grouped_bars([f"batch {b}" for b in batch_sizes], {m: [ms[b, m] for b in batch_sizes] for m in METHODS},
                      machine / "speed.png", f"Decoding time per utterance ({threads} thread(s))",
                      "ms / utterance")
    write_text_atomic(machine / "speed.md", _speed_markdown(rows, speed, settings))
    ctx.write_machine_facts({
        **{f"speedup/batch{b}_{kind}": round(speed[f"ar_{kind}@b{b}"], 3)
           for b in batch_sizes for kind in ("greedy", "beam")},
        **{f"ms_per_utt/{m}@b{b}": v for (b, m), v in ms.items()},
        "timing": settings,
    })
    bleu_rows = [{"model": k, "bleu": m[f"bleu/{d}"], "ci_low": m[f"bleu/{d}_ci95"][0],
                  "ci_high": m[f"bleu/{d}_ci95"][1]} for k, (m, d) in sources.items()]
    write_csv(bleu_rows, out / "plots" / "bleu.csv", ["model", "bleu", "ci_low", "ci_high"])
    plot_grouped_bars(list(bleu), {"BLEU": list(bleu.values())}, out / "plots" / "bleu.png",
                      "tst-COMMON BLEU (sacreBLEU)", "BLEU")
    write_text_atomic(out / "comparison.md", _markdown(nast_m, ar_m, beam))
    metrics = {
        **{f"bleu/{k}": v for k, v in bleu.items()},
        "bleu_signature": nast_m.get("bleu_signature"),
    }
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success("models/st_compare", "comparison")


if __name__ == "__main__":
    stage_main("st_compare", run, blocks=("st",))
