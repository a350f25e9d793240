"""Stage `tokenizer`: train a byte-level BPE on the LM corpus (or adopt a local HF tokenizer)."""
from __future__ import annotations

from statistics import fmean

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.models.tokenizer import load_tokenizer, train_bpe_tokenizer
from stages.common import texts


def run(ctx: StageContext) -> None:
    p = ctx.block("tokenizer")
    corpus = texts(ctx.input("corpus"))
    if p.get("pretrained"):
        tokenizer = load_tokenizer(str(p["pretrained"]))
    else:
        tokenizer = train_bpe_tokenizer(corpus, vocab_size=int(p["vocab_size"]), min_frequency=int(p["min_frequency"]))
    out = ctx.output("out")
    tokenizer.save_pretrained(str(out))
    sample = corpus[:2000]
    n_tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in sample]
    n_words = [max(1, len(t.split())) for t in sample]
    roundtrip = fmean(float(tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"]) == t) for t in sample)
    metrics = {
        "vocab_size": len(tokenizer),
        "tokens_per_word": round(sum(n_tokens) / sum(n_words), 4),
        "tokens_per_example": round(fmean(n_tokens), 2),
        "roundtrip_exact": round(roundtrip, 4),
        "pretrained": bool(p.get("pretrained")),
    }
    ctx.log_dataset(ctx.input("corpus"), context="training", name="corpus_train")
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("tokenizer", run, inputs=("corpus",), outputs=("out",))
