"""What the speech stages' output folders hold, and reading them back.

The corpus folder (MuST-C layout) holds `corpus.json`, which says where the MuST-C root really
is: the synthetic corpus next to it (`root: "."`), or a real corpus read in place (absolute path;
its transcripts' md5s are recorded so a changed corpus changes the corpus output). The features
folder holds one `<split>.safetensors` fbank cache per split, keyed by segment id.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.speech.features import FeatureCache
from pipelines.speech.mustc import MustcLayoutError, Segment, load_mustc

CORPUS_INFO = "corpus.json"


def feature_file(features_dir: Path, split: str) -> Path:
    """The fbank cache of `split` inside a features folder."""
    return Path(features_dir) / f"{split}.safetensors"


def load_split(root: Path, split: str, lang: str, source: str) -> list[Segment]:
    """`load_mustc`, with a layout problem or an empty split reported as a ValueError naming `source`."""
    try:
        segments = load_mustc(root, split, lang=lang)
    except MustcLayoutError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    if not segments:
        raise ValueError(f"{source}: split '{split}' under {root} has no segments")
    return segments


def read_corpus_info(corpus_dir: Path) -> dict:
    """`corpus.json` of a corpus folder, with `root` resolved to an absolute path."""
    path = Path(corpus_dir) / CORPUS_INFO
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the speech_corpus stage first")
    info = json.loads(path.read_text(encoding="utf-8"))
    root = Path(info["root"])
    info["root"] = root if root.is_absolute() else (Path(corpus_dir) / root).resolve()
    return info


def corpus_segments(corpus_dir: Path, split: str) -> list[Segment]:
    """The segments of `split` of the corpus a corpus folder points at."""
    info = read_corpus_info(corpus_dir)
    source = "speech.mustc_root" if not info["synthetic"] else str(corpus_dir)
    return load_split(info["root"], split, info["lang"], source)


def split_features(features_dir: Path, split: str, segments: list[Segment]) -> list:
    """Feature matrices of `segments` in order, checked against the cache's segment ids."""
    path = feature_file(features_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the speech_features stage first")
    cache = FeatureCache(path)
    if cache.ids != [s.id for s in segments]:
        raise ValueError(f"{path}: segment ids differ from the corpus split '{split}'; rerun speech_features")
    return [cache[i] for i in range(len(cache))]


def all_features(path: Path) -> list:
    """Every feature matrix of one cache file, in its order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the speech_features stage first")
    cache = FeatureCache(path)
    return [cache[i] for i in range(len(cache))]
