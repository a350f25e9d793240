"""Stage `st_compare`: NAST against the AR baseline: decoding speed and BLEU, side by side.

Speed (`pipelines.speech.comparison`): the trained models decode the first `st.compare.n_utterances`
tst-COMMON utterances at each batch size, in one process with `st.compare.threads` torch threads;
each number is the median of `repeats` full passes after `warmup` passes. BLEU comes from the two
training stages' metrics (same test set, same sacreBLEU signature); their difference is tested with
sacreBLEU's paired approximate randomization on the stages' hypotheses (`st.compare.paired_trials`).

Speed is a fact about the machine, not about the models: the tracked output (BLEU table, plot and
metrics) stays identical across machines, while the speed table (`speed.md`), `speed.csv`,
`speed.png` and the `speedup/...` and `ms_per_utt/...` figures go to the untracked
`reports/machine/st_compare/` and to MLflow.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from pipelines.atomic import write_text_atomic
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.machine import machine_dir_rel
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.threads import capped_threads
from pipelines.evaluation.plots import plot_grouped_bars, write_csv
from pipelines.data.jsonl import read_jsonl
from pipelines.speech.comparison import (
    METHODS, bleu_markdown, bleu_table, measure_speed, paired_bleu_test, speed_markdown,
)
from pipelines.speech.curves import plot_bleu_curves
from pipelines.speech.models import load_model
from pipelines.speech.store import all_features
from stages.speech_common import relative


def _load(folder: Path):
    if not (folder / "metrics.json").is_file():
        raise ParamsError(f"{folder / 'metrics.json'}: missing; run the stage that writes {folder.name} first")
    return load_model(folder / "model"), json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _curve(path: Path, x: str, y: str) -> list[tuple[float, float]]:
    """(x, y) points of a CSV's rows that have y (empty when the file is absent)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [(float(r[x]), float(r[y])) for r in csv.DictReader(fh) if r.get(y) not in (None, "")]


def plot_training_curves(ctx: StageContext, out: Path) -> None:
    """Dev BLEU of both models by step (tracked) and by training seconds (machine folder, when both stages ran here)."""
    models = {"NAST": ctx.input("nast"), "AR": ctx.input("ar")}
    by_step = {name: _curve(folder / "plots" / "train_curve.csv", "step", "eval_bleu") for name, folder in models.items()}
    plot_bleu_curves(by_step, out / "plots" / "dev_bleu_by_step.png", "optimizer step", "Dev BLEU during training")
    by_time = {name: _curve(ctx.root / machine_dir_rel(f"st_train@{folder.name}") / "dev_bleu_by_time.csv",
                            "train_seconds", "dev_bleu") for name, folder in models.items()}
    if all(by_time.values()):
        plot_bleu_curves(by_time, ctx.machine_dir() / "dev_bleu_by_time.png", "training seconds (this machine)",
                         "Dev BLEU against training time")
    else:
        logging.getLogger(__name__).info("no dev BLEU timings from this machine for %s: time plot skipped",
                                         [n for n, pts in by_time.items() if not pts])


def run(ctx: StageContext) -> None:
    st = ctx.block("st")
    p = st["compare"]
    beam = int(st["eval"]["beam_size"])
    nast, nast_m = _load(ctx.input("nast"))
    ar, ar_m = _load(ctx.input("ar"))
    try:
        feats = all_features(ctx.input("test_features"))
    except FileNotFoundError as exc:
        raise ParamsError(str(exc)) from exc
    n_utts = p.get("n_utterances")
    feats = feats[: int(n_utts)] if n_utts else feats
    batch_sizes = [int(b) for b in p["batch_sizes"]]
    if not feats or not batch_sizes or min(batch_sizes) < 1:
        raise ParamsError("params.yaml: st.compare: need n_utterances >= 1 and batch sizes >= 1")
    threads = capped_threads(int(p["threads"]))
    rows, speed, settings = measure_speed(nast, ar, feats, batch_sizes, beam_size=beam, threads=threads,
                                          warmup=int(p["warmup"]), repeats=int(p["repeats"]))
    table = bleu_table({"nast": nast_m, "ar": ar_m})
    paired = paired_bleu_test(read_jsonl(ctx.input("nast") / "hyps.jsonl"), read_jsonl(ctx.input("ar") / "hyps.jsonl"),
                              int(p["paired_trials"]))

    out = ctx.output("out")
    machine = ctx.machine_dir()
    ms = {(r["batch"], r["method"]): round(r["ms_per_utt"], 3) for r in rows}
    write_csv([{"batch": b, **{m: ms[b, m] for m in METHODS}} for b in batch_sizes], machine / "speed.csv",
              ["batch", *METHODS])
    plot_grouped_bars([f"batch {b}" for b in batch_sizes], {m: [ms[b, m] for b in batch_sizes] for m in METHODS},
                      machine / "speed.png", f"Decoding time per utterance ({threads} thread(s))",
                      "ms / utterance")
    write_text_atomic(machine / "speed.md", speed_markdown(rows, speed, settings))
    ctx.write_machine_facts({
        **{f"speedup/batch{b}_{kind}": round(speed[f"ar_{kind}@b{b}"], 3)
           for b in batch_sizes for kind in ("greedy", "beam")},
        **{f"ms_per_utt/{m}@b{b}": v for (b, m), v in ms.items()},
        "timing": settings,
    })
    write_csv([{"model": k, "bleu": b, "ci_low": ci[0], "ci_high": ci[1]} for k, (b, ci) in table.items()],
              out / "plots" / "bleu.csv", ["model", "bleu", "ci_low", "ci_high"])
    plot_grouped_bars(list(table), {"BLEU": [b for b, _ in table.values()]}, out / "plots" / "bleu.png",
                      "tst-COMMON BLEU (sacreBLEU)", "BLEU")
    plot_training_curves(ctx, out)
    write_text_atomic(out / "comparison.md", bleu_markdown(nast_m, ar_m, beam, paired))
    ctx.write_metrics(out, {**{f"bleu/{k}": b for k, (b, _) in table.items()}, **paired,
                            "bleu_signature": nast_m.get("bleu_signature")})
    ctx.log_artifacts_on_success(relative(ctx.root, ctx.output_path("out")), "comparison")


if __name__ == "__main__":
    stage_main("st_compare", run, blocks=("st",), inputs=("test_features", "nast", "ar"), outputs=("out",))
