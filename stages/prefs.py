"""Stage `prefs`: bring the labeled preference data the reward models train on into one schema.

The source is the simulated world by default, or any local JSONL/JSON/Parquet file in Anthropic-HH,
UltraFeedback-binarized or prompt/chosen/rejected layout, or a `datasets` hub name. Every record is
validated before anything is written; a bad one fails the stage naming file, line and field.
"""
from __future__ import annotations

from statistics import fmean

from alignflow.errors import AlignflowError, ParamsError
from alignflow.stage import StageContext, stage_main
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.data.loaders import PreferenceSourceError, load_preferences


def run(ctx: StageContext) -> None:
    p = ctx.block("prefs")
    missing = [k for k in ("path", "hub", "format", "split", "limit") if k not in p]
    if missing:
        raise ParamsError(f"params.yaml: prefs: missing key(s) {', '.join(missing)}")
    source = f"hub:{p['hub']}" if p["hub"] else str(ctx.root / p["path"])
    try:
        records = load_preferences(source, format=p["format"], split=p["split"], limit=p["limit"])
    except PreferenceSourceError as exc:
        raise AlignflowError(str(exc)) from exc
    if not records:
        raise AlignflowError(f"{source}: no preference records")
    out = ctx.output("data/prefs")
    write_jsonl_atomic(records, out / "train.jsonl")
    metrics = {
        "n_pairs": len(records),
        "source": p["hub"] or p["path"],
        "source_format": records[0]["source"].split(":", 1)[0],
        "prompt_chars_mean": round(fmean(len(r["prompt"]) for r in records), 2),
        "chosen_chars_mean": round(fmean(len(r["chosen"]) for r in records), 2),
        "rejected_chars_mean": round(fmean(len(r["rejected"]) for r in records), 2),
    }
    agree = [r["label_agrees_with_gold"] for r in records if r.get("label_agrees_with_gold") is not None]
    if agree:
        metrics["label_agreement_with_gold"] = round(fmean(float(a) for a in agree), 6)
    ctx.log_dataset(out / "train.jsonl", context="preferences", name="prefs_train")
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("prefs", run)
