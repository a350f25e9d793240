"""Stage `base_lm`: pre-train a Llama-architecture causal LM on the corpus (or start from a local checkpoint).

Gate: validation perplexity at most `base_lm.gate.max_val_ppl`.
"""
from __future__ import annotations


from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, upper_bound_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.tracking import file_md5
from pipelines.data.lm_data import pack_corpus
from pipelines.evaluation.perplexity import perplexity
from pipelines.models.causal_lm import build_llama, causal_lm_loss, count_parameters, load_causal_lm, save_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.loop import train
from pipelines.training.rng import set_seed
from stages.common import checkpoint_key, drop_checkpoint, finish_trained_model, texts, train_config


def run(ctx: StageContext) -> None:
    p = ctx.block("base_lm")
    cfg = train_config(ctx, p, "base_lm")
    set_seed(ctx.seed)
    if p.get("init_from"):
        model = load_causal_lm(str(p["init_from"]))
        tokenizer = load_tokenizer(str(p["init_from"]))
    else:
        tokenizer = load_tokenizer(str(ctx.input("tokenizer")))
        try:
            model = build_llama(dict(p["model"]), tokenizer, seed=ctx.seed)
        except ValueError as exc:
            raise ParamsError(f"params.yaml: base_lm.model: {exc}") from exc
    block = int(p["block_size"])
    train_path, val_path = ctx.input("train"), ctx.input("val")
    train_blocks = pack_corpus(texts(train_path), tokenizer, block)
    val_blocks = pack_corpus(texts(val_path), tokenizer, block)
    ctx.log_dataset(train_path, "training", "corpus_train")
    ctx.log_dataset(val_path, "validation", "corpus_val")

    def evaluate(m) -> dict:
        return {"val_ppl": perplexity(m, val_blocks, batch_size=32)}

    ckpt = ctx.checkpoint_dir(checkpoint_key(p, ctx.seed, file_md5(train_path)))
    initial_ppl = evaluate(model)["val_ppl"]
    result = train(model, train_blocks, causal_lm_loss, cfg, eval_fn=evaluate, checkpoint_dir=str(ckpt),
                   on_log=ctx.stream_history("train"))
    model.eval()
    val_ppl = evaluate(model)["val_ppl"]
    out = ctx.output("out")
    save_causal_lm(model, tokenizer, str(out / "model"))
    threshold = float(p["gate"]["max_val_ppl"])
    metrics = {
        "val_ppl": round(val_ppl, 4),
        "initial_val_ppl": round(initial_ppl, 4),
        "train_steps": result.steps,
        "train_tokens": result.tokens_seen,
        "stopped_by_time_budget": result.stopped_by_time_budget,
        "n_params": count_parameters(model),
        "n_layers": int(model.config.num_hidden_layers),
        "train_blocks": int(train_blocks.shape[0]),
        "gate": upper_bound_gate("val_ppl", round(val_ppl, 4), threshold, Provenance(
            ctx.profile, file_eval_set(ctx.root, val_path, val_blocks.shape[0]),
            result.stopped_by_time_budget)),
    }
    ctx.write_machine_facts({"train_seconds": round(result.elapsed_s, 2),
                             "tokens_per_second": round(result.tokens_seen / max(result.elapsed_s, 1e-9), 1)})
    finish_trained_model(ctx, out, ctx.output_path("out"), result.history, "Base LM pre-training", "val_ppl", metrics)
    drop_checkpoint(ckpt)  # finished: nothing left to resume


if __name__ == "__main__":
    stage_main("base_lm", run, inputs=("tokenizer", "train", "val"), outputs=("out",))
