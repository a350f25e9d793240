"""What the speech-translation stages share: where the corpus, vocabulary and features live, and
reading them with errors that name the param or path to fix.

`speech_corpus` writes `data/speech/mustc/corpus.json`, which says where the MuST-C root really is:
the synthetic corpus next to it, or the real corpus named by `speech.mustc_root` (not copied into
DVC: its transcripts' md5s are recorded in corpus.json instead, so a changed corpus changes the
stage output).
"""
from __future__ import annotations

import json
from pathlib import Path

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext
from pipelines.speech.corpus import SPLITS
from pipelines.speech.mustc import MustcLayoutError, Segment, load_mustc

CORPUS_DIR = "data/speech/mustc"
FEATURES_DIR = "data/speech/features"
VOCAB_DIR = "models/speech_vocab"
TRAIN, DEV, TEST = SPLITS  # train, dev, tst-COMMON
SEED_KEY = "speech_seed"  # seeds the model stages only, so a study can vary it alone


def load_split(root: Path, split: str, lang: str, source: str) -> list[Segment]:
    """`load_mustc`, with a layout problem turned into a ParamsError naming `source` and the path."""
    try:
        segments = load_mustc(root, split, lang=lang)
    except MustcLayoutError as exc:
        raise ParamsError(f"{source}: {exc}") from exc
    if not segments:
        raise ParamsError(f"{source}: split '{split}' under {root} has no segments")
    return segments


def corpus_info(ctx: StageContext) -> dict:
    """`corpus.json` of the corpus stage, with `root` resolved to an absolute path."""
    path = ctx.root / CORPUS_DIR / "corpus.json"
    if not path.is_file():
        raise ParamsError(f"{path}: missing; run the speech_corpus stage first")
    info = json.loads(path.read_text(encoding="utf-8"))
    root = Path(info["root"])
    info["root"] = root if root.is_absolute() else (ctx.root / CORPUS_DIR / root).resolve()
    return info


def segments(ctx: StageContext, split: str) -> list[Segment]:
    info = corpus_info(ctx)
    source = "speech.mustc_root" if not info["synthetic"] else str(ctx.root / CORPUS_DIR)
    return load_split(info["root"], split, info["lang"], source)


def features_path(ctx: StageContext, split: str) -> Path:
    return ctx.root / FEATURES_DIR / f"{split}.safetensors"


def split_features(ctx: StageContext, split: str, segs: list[Segment]) -> list:
    """Feature matrices of `segs` in order, checked against the cache's segment ids."""
    from pipelines.speech.features import FeatureCache

    path = features_path(ctx, split)
    if not path.is_file():
        raise ParamsError(f"{path}: missing; run the speech_features stage first")
    cache = FeatureCache(path)
    if cache.ids != [s.id for s in segs]:
        raise ParamsError(f"{path}: segment ids differ from the corpus split '{split}'; rerun speech_features")
    return [cache[i] for i in range(len(cache))]
