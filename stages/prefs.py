"""Stage `prefs`: bring the labeled preference data the reward models train on into one schema.

The source is the simulated world by default, or any local JSONL/JSON/Parquet file in Anthropic-HH,
UltraFeedback-binarized or prompt/chosen/rejected layout, or a `datasets` hub name (`prefs.hub`,
with `prefs.path` null or ignored). Every record is validated before anything is written. Empty
responses are kept as data (pipelines/data/loaders.py says why). A record that breaks a rule fails
the stage naming file, line and field, unless `prefs.invalid: skip`: then it is dropped and counted
in the metrics as `skipped/<reason>`, with the first such record's location logged.
"""
from __future__ import annotations

import logging
from statistics import fmean

from alignflow.runtime.errors import AlignflowError, ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.data.loaders import (INVALID_POLICIES, REASONS, PreferenceDataError, PreferenceSourceError,
                                    read_preferences)

log = logging.getLogger("alignflow.stage")
KEYS = ("path", "hub", "format", "split", "limit", "invalid")


def source_of(p: dict) -> str:
    """`hub:NAME` when prefs.hub is set, else the local path (relative to the project root)."""
    if p["hub"]:
        if not isinstance(p["hub"], str):
            raise ParamsError(f"params.yaml: prefs.hub: expected a dataset name, got {p['hub']!r}")
        return f"hub:{p['hub']}"
    if not p["path"]:
        raise ParamsError("params.yaml: prefs.path: set a preference file, or name a dataset in prefs.hub")
    if not isinstance(p["path"], str):
        raise ParamsError(f"params.yaml: prefs.path: expected a file path, got {p['path']!r}")
    return p["path"]


def run(ctx: StageContext) -> None:
    p = ctx.block("prefs")
    missing = [k for k in KEYS if k not in p]
    if missing:
        raise ParamsError(f"params.yaml: prefs: missing key(s) {', '.join(missing)}")
    if p["invalid"] not in INVALID_POLICIES:
        raise ParamsError(f"params.yaml: prefs.invalid: expected one of {', '.join(INVALID_POLICIES)}, "
                          f"got {p['invalid']!r}")
    source = source_of(p)
    if not source.startswith("hub:"):
        source = str(ctx.root / source)
    try:
        load = read_preferences(source, format=p["format"], split=p["split"], limit=p["limit"], invalid=p["invalid"])
    except PreferenceSourceError as exc:
        raise AlignflowError(str(exc)) from exc
    except PreferenceDataError as exc:
        if exc.reason is None:
            raise
        raise PreferenceDataError(f"{exc} (prefs.invalid: skip drops such records and counts them)",
                                  exc.reason) from None
    records = load.records
    for reason, count in sorted(load.skipped.items()):
        log.warning("skipped %d invalid record(s) (%s); first: %s", count, reason, load.first_skipped[reason])
    if not records:
        skipped = sum(load.skipped.values())
        raise AlignflowError(f"{source}: no preference records" + (f" ({skipped} invalid ones skipped)" if skipped else ""))
    out = ctx.output("out")
    write_jsonl_atomic(records, out / "train.jsonl")
    metrics = {
        "n_pairs": len(records),
        "source": p["hub"] or p["path"],
        "source_format": records[0]["source"].split(":", 1)[0],
        "prompt_chars_mean": round(fmean(len(r["prompt"]) for r in records), 2),
        "chosen_chars_mean": round(fmean(len(r["chosen"]) for r in records), 2),
        "rejected_chars_mean": round(fmean(len(r["rejected"]) for r in records), 2),
        "n_empty_chosen": sum(1 for r in records if not r["chosen"]),
        "n_empty_rejected": sum(1 for r in records if not r["rejected"]),
        "n_skipped": sum(load.skipped.values()),
        **{f"skipped/{reason}": load.skipped.get(reason, 0) for reason in REASONS},
    }
    agree = [r["label_agrees_with_gold"] for r in records if r.get("label_agrees_with_gold") is not None]
    if agree:
        metrics["label_agreement_with_gold"] = round(fmean(float(a) for a in agree), 6)
    ctx.log_dataset(out / "train.jsonl", context="preferences", name="prefs_train")
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("prefs", run, outputs=("out",))
