"""Stage `speech_vocab`: one joint English+German subword vocabulary (Unigram, CTC blank = id 0),
trained on the train split's transcripts and translations, saved as tokenizer.json in `--out`."""
from __future__ import annotations

from statistics import fmean

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.speech.vocab import train_vocab
from stages.speech_common import DEV, TRAIN, segments


def run(ctx: StageContext) -> None:
    p = ctx.block("speech")
    size = int(p["vocab_size"])
    if size < 16:
        raise ParamsError(f"params.yaml: speech.vocab_size: {size} is too small (at least 16)")
    corpus = ctx.input("corpus")
    train = segments(corpus, TRAIN)
    vocab = train_vocab([s.en for s in train] + [s.tgt for s in train], vocab_size=size)
    out = ctx.output("out")
    vocab.save(out)
    dev = segments(corpus, DEV)
    unk = vocab.unk_id
    dev_ids = [vocab.encode(t) for s in dev for t in (s.en, s.tgt)]
    def per_word(texts: list[str]) -> float:
        return round(sum(len(vocab.encode(t)) for t in texts) / max(1, sum(len(t.split()) for t in texts)), 4)

    metrics = {
        "vocab_size": len(vocab),
        "train_sentences": len(train),
        "tokens_per_word/en": per_word([s.en for s in train]),
        "tokens_per_word/de": per_word([s.tgt for s in train]),
        "tokens_per_sentence/de": round(fmean(len(vocab.encode(s.tgt)) for s in train), 2),
        "dev_unk_rate": round(sum(i.count(unk) for i in dev_ids) / max(1, sum(map(len, dev_ids))), 5),
        "dev_roundtrip_exact": round(fmean(float(vocab.decode(vocab.encode(s.tgt)) == s.tgt) for s in dev), 4),
    }
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("speech_vocab", run, blocks=("speech",), inputs=("corpus",), outputs=("out",))
