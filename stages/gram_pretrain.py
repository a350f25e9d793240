"""Stage `gram_pretrain` (GRAM stage 1): next-token training on unlabeled response pairs, no labels.

Loss -log p(y_a | x) - log p(y_b | x, y_a) in the judge layout, so the model learns to read two
responses side by side before it ever sees a preference label.
"""
from __future__ import annotations

from functools import partial

from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl
from pipelines.data.lm_data import collate_pad
from pipelines.evaluation.perplexity import perplexity
from pipelines.models.causal_lm import load_causal_lm, save_causal_lm
from pipelines.models.reward import gram_stage1_loss, unlabeled_pair_examples
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, train_config, write_curves


def run(ctx: StageContext) -> None:
    ctx.use_seed("reward_seed")
    p = ctx.block("gram_pretrain")
    cfg = train_config(ctx, p, "gram_pretrain")
    set_seed(ctx.seed)
    base = ctx.input("base")
    model, tokenizer = load_causal_lm(str(base)), load_tokenizer(str(base))
    pairs_path = ctx.input("pairs")
    records = read_jsonl(pairs_path)
    n_val = min(int(p["n_val"]), max(1, len(records) // 10))
    examples = unlabeled_pair_examples(records, tokenizer, int(p["max_length"]))
    train_ex, val_ex = examples[n_val:], examples[:n_val]
    ctx.log_dataset(pairs_path, "training", "unlabeled_pairs")
    pad = tokenizer.pad_token_id

    def evaluate(m) -> dict:
        return {"val_ppl": perplexity(m, val_ex, batch_size=32, pad_id=pad)}

    initial = evaluate(model)["val_ppl"]
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(pairs_path), file_md5(base / "model.safetensors")))
    result = train(model, train_ex, gram_stage1_loss, cfg, eval_fn=evaluate, checkpoint_dir=str(ckpt),
                   on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_pad, pad_id=pad))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    final = evaluate(model)["val_ppl"]
    out = ctx.output("out")
    save_causal_lm(model, tokenizer, str(out / "model"))
    write_curves(out, result.history, "GRAM stage 1: unlabeled response pairs", "val_ppl")
    ctx.log_history(result.history, "train")
    ctx.write_metrics(out, {"val_ppl": round(final, 4), "initial_val_ppl": round(initial, 4),
                            "train_pairs": len(train_ex), "train_steps": result.steps,
                            "stopped_by_time_budget": result.stopped_by_time_budget})
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("gram_pretrain", run, inputs=("base", "pairs"), outputs=("out",))
