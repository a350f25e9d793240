"""Stage `speech_features`: 80-dim Kaldi fbank with utterance CMVN for every split, one safetensors
cache per split (`<split>.safetensors` in `--out`, keyed by segment id)."""
from __future__ import annotations

import time

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.speech.features import FbankConfig, FeatureCache, extract_features
from pipelines.speech.corpus import SPLITS
from pipelines.speech.store import feature_file
from stages.speech_common import segments


def run(ctx: StageContext) -> None:
    corpus = ctx.input("corpus")
    out = ctx.output("out")
    config = FbankConfig()
    metrics: dict = {"num_mel_bins": config.num_mel_bins, "cmvn": config.cmvn, "frame_shift_ms": config.frame_shift_ms}
    for split in SPLITS:
        segs = segments(corpus, split)
        start = time.perf_counter()
        path = extract_features(segs, feature_file(out, split), config=config, progress=False)
        cache = FeatureCache(path)
        frames = [cache.num_frames(i) for i in range(len(cache))]
        metrics[split] = {"utterances": len(cache), "frames": int(sum(frames)), "max_frames": int(max(frames)),
                          "mean_frames": round(sum(frames) / len(frames), 1)}
        ctx.write_machine_facts({split: {"seconds": round(time.perf_counter() - start, 2)}})
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("speech_features", run, blocks=(), inputs=("corpus",), outputs=("out",))
