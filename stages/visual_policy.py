"""Stage `visual_policy`: the vision-language policy, pre-trained to caption and answer (LLaVA architecture).

Trains a BPE tokenizer (plus `<image>`) on the branch's texts and builds a small LLaVA from
`visual.policy.model`, or starts from the checkpoint named by `visual.policy.init` (a local LLaVA
directory, or a hub name with a network). Then supervised captioning / answer training on
the world's `sft.jsonl`. Scored by the gold oracle on greedy answers to held-out visual prompts:
hallucination rate and recall. The visual reward models start from this model; best-of-n samples it.
"""
from __future__ import annotations

from functools import partial

from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.jsonl import read_jsonl
from pipelines.models.vlm.encoding import Layout, collate_lm, lm_examples
from pipelines.models.vlm.llava import build_llava, image_size, load_vlm, n_image_tokens, save_vlm, train_vlm_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from pipelines.visual.images import ImageStore
from pipelines.visual.policy import captioning_loss, sample_responses
from pipelines.visual.policy_eval import TOKENIZER_FILES, greedy_metrics, held_out_prompts, tokenizer_texts
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, train_config


def run(ctx: StageContext) -> None:
    # the global seed, not visual_seed: a study varying visual_seed keeps one policy (and its embeddings)
    p = ctx.block("visual")["policy"]
    world = ctx.input("world")
    set_seed(ctx.seed)
    if p.get("init"):
        local = ctx.root / str(p["init"])  # a relative path means the project's; otherwise a hub name
        vlm, tokenizer = load_vlm(str(local if local.exists() else p["init"]))
    else:
        tokenizer = train_vlm_tokenizer(tokenizer_texts(world), int(p["vocab_size"]))
        vlm = build_llava(p["model"], tokenizer, seed=ctx.seed)
    layout = Layout.of(vlm, tokenizer, int(p["max_length"]))
    images = ImageStore(world, image_size(vlm))
    sft = read_jsonl(world / "sft.jsonl")
    examples = lm_examples(sft, layout, [images(r) for r in sft])
    ctx.log_dataset(world / "sft.jsonl", "training", "visual_sft")
    cfg = train_config(ctx, p, "visual.policy")
    # the tokenizer is trained on every pool, so all of them key the resumable run
    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, *(file_md5(world / f) for f in TOKENIZER_FILES)))
    result = train(vlm, examples, captioning_loss, cfg, checkpoint_dir=str(ckpt), on_log=ctx.stream_history("train"),
                   collate_fn=partial(collate_lm, pad_id=layout.pad_id))
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2)})

    ev = p["eval"]
    held_out = held_out_prompts(world, int(ev["n_prompts"]))
    answers = [a[0] for a in sample_responses(vlm, layout, held_out, [images(r) for r in held_out], n=1,
                                              max_new_tokens=int(ev["max_new_tokens"]), temperature=1.0,
                                              seed=ctx.seed, greedy=True)]
    metrics: dict = {"n_params": sum(t.numel() for t in vlm.parameters()), "image_tokens": n_image_tokens(vlm),
                     "train_examples": len(sft), "train_steps": result.steps,
                     "stopped_by_time_budget": result.stopped_by_time_budget,
                     "final_train_loss": round(float(result.final_metrics["train_loss"]), 5)
                     if "train_loss" in result.final_metrics else None, "eval_prompts": len(held_out)}
    metrics.update(greedy_metrics(held_out, answers, 1000, ctx.seed))
    out = ctx.output("out")
    save_vlm(vlm, tokenizer, out / "model")
    (out / "samples.md").write_text("\n".join(f"- **{r['prompt']}** ({r['image']}) -> {a}"
                                             for r, a in zip(held_out[:20], answers[:20])) + "\n")
    finish_trained_model(ctx, out, ctx.output_path("out"), result.history, "Visual policy captioning loss",
                         "val_loss", metrics)
    drop_checkpoint(ckpt)


if __name__ == "__main__":
    stage_main("visual_policy", run, blocks=("visual",), inputs=("world",), outputs=("out",))
