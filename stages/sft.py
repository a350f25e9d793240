"""Stage `sft`: supervised fine-tuning of the base LM on mixed-quality demonstrations.

Measures what SFT buys in the world's own currency: the gold reward of sampled responses on
held-out prompts, for the base LM and the SFT policy on the same prompts, next to the gold reward
of the demonstrations themselves. Gate: the paired SFT - base gold difference has a 95% bootstrap
interval above `sft.gate.min_gain`.
"""
from __future__ import annotations

from statistics import fmean

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, interval_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.data.lm_data import collate_pad, sft_examples
from pipelines.evaluation.bootstrap import bootstrap_mean_ci, paired_difference_ci
from pipelines.evaluation.perplexity import perplexity
from pipelines.evaluation.plots import plot_grouped_bars, write_csv
from pipelines.evaluation.sft_eval import gold_by_family, sample_gold
from pipelines.models.causal_lm import causal_lm_loss, load_causal_lm, save_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config


def run(ctx: StageContext) -> None:
    p = ctx.block("sft")
    cfg = train_config(ctx, p, "sft")
    ev = p["eval"]
    set_seed(ctx.seed)
    base_dir = ctx.input("base")
    model, tokenizer = load_causal_lm(str(base_dir)), load_tokenizer(str(base_dir))
    demos_path, val_path, prompts_path = ctx.input("train"), ctx.input("val"), ctx.input("prompts")
    demos, val = read_jsonl(demos_path), read_jsonl(val_path)
    prompts = read_jsonl(prompts_path)[: int(ev["n_prompts"])]
    if not prompts:
        raise ParamsError("params.yaml: sft.eval.n_prompts: no evaluation prompts selected")
    max_len = int(p["max_length"])
    train_ex, val_ex = sft_examples(demos, tokenizer, max_len), sft_examples(val, tokenizer, max_len)
    for path, context in ((demos_path, "training"), (val_path, "validation"), (prompts_path, "evaluation")):
        ctx.log_dataset(path, context)
    pad = tokenizer.pad_token_id

    def evaluate(m) -> dict:
        return {"val_ppl": perplexity(m, val_ex, batch_size=32, pad_id=pad)}

    base_responses, base_gold = sample_gold(model, tokenizer, prompts, ev, ctx.seed)
    base_ppl = evaluate(model)["val_ppl"]
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(demos_path),
                                             file_md5(base_dir / "model.safetensors")))
    result = train(model, train_ex, causal_lm_loss, cfg, eval_fn=evaluate, checkpoint_dir=str(ckpt),
                   on_log=ctx.stream_history("train"),
                   collate_fn=lambda batch: collate_pad(batch, pad))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})
    model.eval()
    val_ppl = evaluate(model)["val_ppl"]
    sft_responses, sft_gold = sample_gold(model, tokenizer, prompts, ev, ctx.seed)

    n_boot = int(ev["bootstrap"])
    mean, low, high = bootstrap_mean_ci(sft_gold, n_boot, ctx.seed)
    base_mean, base_low, base_high = bootstrap_mean_ci(base_gold, n_boot, ctx.seed)
    gain, gain_low, gain_high = paired_difference_ci(sft_gold, base_gold, n_boot, ctx.seed)
    demos_gold = fmean(d["gold"] for d in demos)
    min_gain = float(p["gate"]["min_gain"])

    out = ctx.output("out")
    save_causal_lm(model, tokenizer, str(out / "model"))
    rows = gold_by_family(prompts, {"gold_sft": sft_gold, "gold_base": base_gold}, demos)
    write_csv(rows, out / "plots" / "gold_by_family.csv", ["family", "gold_sft", "gold_base", "gold_demos"])
    plot_grouped_bars([r["family"] for r in rows],
                      {k: [r[k] if r[k] is not None else 0.0 for r in rows] for k in ("gold_base", "gold_sft", "gold_demos")},
                      out / "plots" / "gold_by_family.png", "Gold reward on held-out prompts", "mean gold reward")
    write_jsonl_atomic([{"id": r["id"], "family": r["family"], "prompt": r["prompt"], "base": b, "sft": s,
                         "gold_base": gb, "gold_sft": gs}
                        for r, b, s, gb, gs in zip(prompts, base_responses, sft_responses, base_gold, sft_gold)],
                       out / "samples.jsonl")
    metrics = {
        "val_ppl": round(val_ppl, 4),
        "base_val_ppl": round(base_ppl, 4),
        "gold_reward_mean": round(mean, 4), "gold_reward_ci95": [round(low, 4), round(high, 4)],
        "base_gold_reward_mean": round(base_mean, 4), "base_gold_reward_ci95": [round(base_low, 4), round(base_high, 4)],
        "gold_gain_over_base": round(gain, 4), "gold_gain_ci95": [round(gain_low, 4), round(gain_high, 4)],
        "demos_gold_reward_mean": round(demos_gold, 4),
        "n_eval_prompts": len(prompts),
        "train_steps": result.steps,
        "stopped_by_time_budget": result.stopped_by_time_budget,
        "by_family": {r["family"]: {"sft": r["gold_sft"], "base": r["gold_base"]} for r in rows},
        "gate": interval_gate("gold_reward_mean", round(mean, 4), gain_low, min_gain, Provenance(
            ctx.profile, file_eval_set(ctx.root, prompts_path, len(prompts)),
            result.stopped_by_time_budget),
            f"paired gold gain over the base LM {gain:+.3f} [{gain_low:+.3f}, {gain_high:+.3f}]"),
    }
    finish_trained_model(ctx, out, ctx.output_path("out"), result.history, "SFT", "val_ppl", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("sft", run, inputs=("base", "train", "val", "prompts"), outputs=("out",))
