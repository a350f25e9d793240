"""Stages `st_nast`, `st_ar` (and NAST ablations): train a speech-translation model, score it on tst-COMMON.

    python -m stages.st_train --kind nast                          # models/st_nast, registered as st-nast
    python -m stages.st_train --kind ar                            # models/st_ar, registered as st-ar
    python -m stages.st_train --kind nast --name st_nast_nopae --set pae=false --set curriculum=false

The model config is `st.<kind>.model` (overrides of `pipelines.speech.models.config.DEFAULTS`), so
`dvc exp run -S st.nast.model.cross_layer=false` retrains with that switch; `--set key=value` (JSON
value) overrides it once more for an ablation stage. Training is the shared loop with
`st.<kind>.train` as its TrainConfig and utterances bucketed by length (`pipelines.speech.training`).
NAST decodes greedily from its target CTC; AR greedily and with beam search. BLEU is sacreBLEU
(detokenised, case-sensitive, 13a) with a sentence-bootstrap 95% interval; `bleu` is the model's
main decoding (NAST: CTC greedy, AR: beam). The source-CTC head gives transcript WER/CER.
Gate: `bleu` above `st.gate.min_bleu`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import torch

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, lower_bound_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.speech import evaluation as ev
from pipelines.speech.models import build_model, collate, save_model
from pipelines.speech.training import bucket_batches, collate_batch, loop_config, make_examples, st_loss
from pipelines.speech.vocab import Vocab
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, finish_trained_model
from stages.speech_common import (DEV, FEATURES_DIR, SEED_KEY, TEST, TRAIN, VOCAB_DIR, features_path, segments,
                                  split_features)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, choices=("nast", "ar"))
    parser.add_argument("--name", help="stage name and output folder models/NAME (default st_KIND)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model config override on top of st.KIND.model (VALUE is JSON), repeatable")
    args = parser.parse_args(argv)
    args.name = args.name or f"st_{args.kind}"
    return args


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


def _configs(ctx: StageContext, kind: str, sets: dict) -> tuple[dict, TrainConfig, dict, dict]:
    st = ctx.block("st")
    for key in (kind, "eval", "gate"):
        if not isinstance(st.get(key), dict):
            raise ParamsError(f"params.yaml: missing block 'st.{key}'")
    block = st[kind]
    try:
        cfg = TrainConfig.from_dict({**block["train"], "seed": ctx.seed})
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: st.{kind}.train: {exc}") from exc
    model_cfg = {**(block.get("model") or {}), **sets}
    return st, cfg, model_cfg, block


def _bleu_block(hyps: list[str], refs: list[str], n_boot: int, seed: int) -> dict:
    score, low, high = ev.bootstrap_bleu(hyps, refs, n_boot, seed)
    return {"bleu": round(score, 2), "ci95": [round(low, 2), round(high, 2)]}


def _dev_loss(model, examples: list[dict], pad_id: int, batch_size: int) -> dict:
    """Mean total loss and its main parts on the dev split (length-batched, eval mode)."""
    sums, n = {}, 0
    with torch.no_grad():
        for idx in ev.length_batches([len(e["features"]) for e in examples], batch_size):
            out = model.loss(collate([examples[i] for i in idx], pad_id))
            for k in ("total", "tgt_ctc_top", "src_ctc_top", "nll"):
                if k in out:
                    sums[k] = sums.get(k, 0.0) + float(out[k]) * len(idx)
            n += len(idx)
    return {("loss" if k == "total" else k): v / n for k, v in sums.items()}


def make_run(args: argparse.Namespace):
    def run(ctx: StageContext) -> None:
        ctx.use_seed(SEED_KEY)
        sets = parse_sets(args.set)
        st, cfg, model_cfg, block = _configs(ctx, args.kind, sets)
        evp, gate_p = st["eval"], st["gate"]
        torch.set_num_threads(int(st.get("threads", 1)))
        set_seed(ctx.seed)
        vocab = Vocab.load(ctx.root / VOCAB_DIR)
        special = {"pad": vocab.pad_id, "bos": vocab.bos_id, "eos": vocab.eos_id}
        try:
            model = build_model(args.kind, model_cfg, len(vocab), special)
        except ValueError as exc:
            raise ParamsError(f"params.yaml: st.{args.kind}.model (+ --set {sets}): {exc}") from exc

        data = {}
        for split in (TRAIN, DEV, TEST):
            segs = segments(ctx, split)
            data[split] = (segs, make_examples(split_features(ctx, split, segs), segs, vocab))
        train_ex, dev_ex = data[TRAIN][1], data[DEV][1]
        test_segs, test_ex = data[TEST]
        batches = bucket_batches(train_ex, cfg.batch_size, seed=ctx.seed)
        eval_bsz = int(evp["batch_size"])

        ckpt = ctx.checkpoint_dir(checkpoint_key(args.name, block, sets, ctx.seed, file_md5(features_path(ctx, TRAIN)),
                                                 file_md5(ctx.root / VOCAB_DIR / "tokenizer.json")))
        result = train(model, batches, st_loss, loop_config(cfg), checkpoint_dir=str(ckpt),
                       eval_fn=lambda m: _dev_loss(m, dev_ex, vocab.pad_id, eval_bsz),
                       collate_fn=collate_batch(vocab.pad_id))
        model.eval()

        refs = [s.tgt for s in test_segs]
        feats = [e["features"] for e in test_ex]
        n_boot = int(evp["bootstrap"])
        decoded, timing = {}, {}
        for method, fn in ev.decoders(model, beam_size=int(evp["beam_size"])).items():
            start = time.perf_counter()
            decoded[method] = [vocab.decode(ids) for ids in ev.decode(fn, feats, eval_bsz)]
            timing[method] = round(time.perf_counter() - start, 3)
        ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2), "decode_seconds": timing})
        scores = {m: _bleu_block(h, refs, n_boot, ctx.seed) for m, h in decoded.items()}
        main = "greedy" if args.kind == "nast" else "beam"
        _, signature = ev.corpus_bleu(decoded[main], refs)
        transcripts = [vocab.decode(ids) for ids in ev.decode(lambda f, n: ev.source_ctc_decode(model, f, n),
                                                               feats, eval_bsz)]
        min_bleu = float(gate_p["min_bleu"])
        bleu = scores[main]["bleu"]
        logged = [r["train_loss"] for r in result.history if "train_loss" in r]

        out = ctx.output(f"models/{args.name}")
        save_model(model, out / "model")
        vocab.save(out / "model")
        write_jsonl_atomic([{"id": s.id, "en": s.en, "ref": s.tgt, "src_ctc": t, **{m: decoded[m][i] for m in decoded}}
                            for i, (s, t) in enumerate(zip(test_segs, transcripts))], out / "hyps.jsonl")
        metrics = {
            "kind": args.kind,
            "decoding": main if args.kind == "ar" else "ctc_greedy",
            "bleu": bleu, "bleu_ci95": scores[main]["ci95"],
            **{f"bleu/{m}": s["bleu"] for m, s in scores.items()},
            **{f"bleu/{m}_ci95": s["ci95"] for m, s in scores.items()},
            "bleu_signature": signature,
            "bleu_bootstrap": n_boot,
            "src_wer": round(ev.error_rate(transcripts, [s.en for s in test_segs], "word"), 4),
            "src_cer": round(ev.error_rate(transcripts, [s.en for s in test_segs], "char"), 4),
            "hyp_len_ratio": round(sum(len(h.split()) for h in decoded[main])
                                   / max(1, sum(len(r.split()) for r in refs)), 4),
            "empty_hyps": sum(not h.strip() for h in decoded[main]),
            "test_sentences": len(refs),
            "dev_loss": round(result.final_metrics.get("eval_loss", float("nan")), 4),
            "params": sum(p.numel() for p in model.parameters()),
            "model_overrides": sets,
            "train_utterances": len(train_ex),
            "train_steps": result.steps,
            "train_epochs": round(result.steps * cfg.grad_accum_steps / max(1, len(batches)), 2),
            "train_loss": round(logged[-1], 4) if logged else None,  # mean over the last log window
            "stopped_by_time_budget": result.stopped_by_time_budget,
            "threads": torch.get_num_threads(),
            "gate": lower_bound_gate("bleu", bleu, min_bleu, Provenance(
                ctx.profile, file_eval_set(ctx.root, f"{FEATURES_DIR}/{TEST}.safetensors", len(refs)),
                result.stopped_by_time_budget), detail=f"{scores[main]['ci95']} (tst-COMMON, {main})"),
        }
        finish_trained_model(ctx, out, f"models/{args.name}", result.history, f"{args.name} ({args.kind})", "eval_loss",
                             metrics)
        shutil.rmtree(ckpt, ignore_errors=True)

    return run


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    stage_main(arguments.name, make_run(arguments), blocks=("st", SEED_KEY))
