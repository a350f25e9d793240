"""Stage group `st_train` (`st_train@st_nast`, `@st_ar` and the NAST ablations): train a speech-translation
model, score it on tst-COMMON.

    python -m stages.st_train --stage st_train@VARIANT --kind nast|ar --corpus DIR --features DIR --vocab DIR \
        --out DIR [--set KEY=VALUE ...]        (dvc.yaml's st_train entry gives the paths)

The model config is `st.<kind>.model` (overrides of `pipelines.speech.models.config.DEFAULTS`), so
`dvc exp run -S st.nast.model.cross_layer=false` retrains with that switch; `--set key=value` (JSON
value) overrides it once more for an ablation variant. Training is the shared loop with
`st.<kind>.train` as its TrainConfig over length buckets of `st.<kind>.bucket_size` utterances
(`pipelines.speech.training`: the loop's batch_size counts buckets). Scoring is
`pipelines.speech.scoring`: `bleu` is the model's main decoding (NAST: CTC greedy, AR: beam).
Gate: `bleu` above `st.gate.min_bleu`.
"""
from __future__ import annotations

import json

import torch

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, lower_bound_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.threads import capped_threads
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.evaluation.plots import write_csv
from pipelines.speech.curves import CURVE_COLUMNS, TimedEval
from pipelines.speech.models import build_model, save_model
from pipelines.speech.scoring import dev_scores, hypothesis_rows, score_on_test
from pipelines.speech.store import feature_file
from pipelines.speech.training import bucket_batches, collate_batch, make_examples, st_loss
from pipelines.speech.vocab import Vocab
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config
from stages.speech_common import DEV, SEED_KEY, TEST, TRAIN, features, relative, segments


def add_options(parser) -> None:
    parser.add_argument("--kind", required=True, choices=("nast", "ar"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model config override on top of st.KIND.model (VALUE is JSON), repeatable")


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _block(st: dict, kind: str) -> tuple[dict, int]:
    """`st.<kind>`, checked, and its bucket size (utterances per length bucket)."""
    for key in (kind, "eval", "gate"):
        if not isinstance(st.get(key), dict):
            raise ParamsError(f"params.yaml: missing block 'st.{key}'")
    block = st[kind]
    bucket = block.get("bucket_size")
    if isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1:
        raise ParamsError(f"params.yaml: st.{kind}.bucket_size must be an integer >= 1, got {bucket!r}")
    return block, bucket


def run(ctx: StageContext) -> None:
    kind, variant = ctx.args.kind, ctx.name.split("@")[-1]
    ctx.use_seed(SEED_KEY)
    sets = parse_sets(ctx.args.set)
    st = ctx.block("st")
    block, bucket = _block(st, kind)
    cfg = train_config(ctx, block, f"st.{kind}")
    model_cfg = {**(block.get("model") or {}), **sets}
    evp, gate_p = st["eval"], st["gate"]
    corpus_dir, features_dir, vocab_dir = ctx.input("corpus"), ctx.input("features"), ctx.input("vocab")
    torch.set_num_threads(capped_threads(int(st.get("threads", 1))))
    set_seed(ctx.seed)
    vocab = Vocab.load(vocab_dir)
    special = {"pad": vocab.pad_id, "bos": vocab.bos_id, "eos": vocab.eos_id}
    try:
        model = build_model(kind, model_cfg, len(vocab), special)
    except ValueError as exc:
        raise ParamsError(f"params.yaml: st.{kind}.model (+ --set {sets}): {exc}") from exc

    data = {}
    for split in (TRAIN, DEV, TEST):
        segs = segments(corpus_dir, split)
        data[split] = (segs, make_examples(features(features_dir, split, segs), segs, vocab))
    train_ex, dev_ex = data[TRAIN][1], data[DEV][1]
    test_segs, test_ex = data[TEST]
    batches = bucket_batches(train_ex, bucket, seed=ctx.seed)
    eval_bsz = int(evp["batch_size"])

    ckpt = ctx.checkpoint_dir(checkpoint_key(variant, block, sets, ctx.seed, file_md5(feature_file(features_dir, TRAIN)),
                                             file_md5(vocab_dir / "tokenizer.json")))
    dev_refs = [s.tgt for s in data[DEV][0]]
    timed_eval = TimedEval(lambda m: dev_scores(m, dev_ex, dev_refs, vocab, eval_bsz))
    result = train(model, batches, st_loss, cfg, checkpoint_dir=str(ckpt), on_log=ctx.stream_history("train"),
                   eval_fn=timed_eval,
                   collate_fn=collate_batch(vocab.pad_id))
    model.eval()

    scored = score_on_test(model, kind, vocab, test_segs, test_ex, batch_size=eval_bsz,
                           beam_size=int(evp["beam_size"]), n_boot=int(evp["bootstrap"]), seed=ctx.seed)
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2), "decode_seconds": scored["decode_seconds"]})
    write_csv(timed_eval.rows(result.history), ctx.machine_dir() / "dev_bleu_by_time.csv", CURVE_COLUMNS)
    main, scores = scored["main"], scored["scores"]
    bleu = scores[main]["bleu"]
    logged = [r["train_loss"] for r in result.history if "train_loss" in r]

    out = ctx.output("out")
    save_model(model, out / "model")
    vocab.save(out / "model")
    write_jsonl_atomic(hypothesis_rows(test_segs, scored["transcripts"], scored["decoded"]), out / "hyps.jsonl")
    test_file = relative(ctx.root, feature_file(features_dir, TEST))
    metrics = {
        **scored["metrics"],
        "dev_loss": round(result.final_metrics.get("eval_loss", float("nan")), 4),
        "dev_bleu": round(result.final_metrics.get("eval_bleu", float("nan")), 2),
        "params": sum(p.numel() for p in model.parameters()),
        "model_overrides": sets,
        "train_utterances": len(train_ex),
        "train_steps": result.steps,
        "train_epochs": round(result.steps * cfg.grad_accum_steps * cfg.batch_size / max(1, len(batches)), 2),
        "train_loss": round(logged[-1], 4) if logged else None,  # mean over the last log window
        "stopped_by_time_budget": result.stopped_by_time_budget,
        "threads": torch.get_num_threads(),
        "gate": lower_bound_gate("bleu", bleu, float(gate_p["min_bleu"]), Provenance(
            ctx.profile, file_eval_set(ctx.root, test_file, len(test_segs)), result.stopped_by_time_budget),
            detail=f"{scores[main]['ci95']} (tst-COMMON, {main})"),
    }
    finish_trained_model(ctx, out, relative(ctx.root, ctx.output_path("out")), result.history, f"{variant} ({kind})",
                         "eval_bleu", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("st_train", run, blocks=("st", SEED_KEY), inputs=("corpus", "features", "vocab"), outputs=("out",),
               configure=add_options)
