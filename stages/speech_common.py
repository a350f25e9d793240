"""What the speech-translation stages share: the seed key, the split names, and reading the corpus and
feature folders dvc.yaml hands them with errors that name the param or path to fix."""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.errors import ParamsError
from pipelines.speech.corpus import SPLITS
from pipelines.speech.mustc import Segment
from pipelines.speech.store import corpus_segments, load_split, split_features

TRAIN, DEV, TEST = SPLITS  # train, dev, tst-COMMON
SEED_KEY = "speech_seed"  # seeds the model stages only, so a study can vary it alone


def checked_split(root: Path, split: str, lang: str, source: str) -> list[Segment]:
    """`load_split` of a MuST-C root, a layout problem raised as a ParamsError naming `source`."""
    try:
        return load_split(root, split, lang, source)
    except ValueError as exc:
        raise ParamsError(str(exc)) from exc


def segments(corpus_dir: Path, split: str) -> list[Segment]:
    """The segments of `split` of the corpus folder (the synthetic corpus or the real root it names)."""
    try:
        return corpus_segments(corpus_dir, split)
    except (ValueError, FileNotFoundError) as exc:
        raise ParamsError(str(exc)) from exc


def features(features_dir: Path, split: str, segs: list[Segment]) -> list:
    """Feature matrices of `segs`, checked against the features folder's cache of `split`."""
    try:
        return split_features(features_dir, split, segs)
    except (ValueError, FileNotFoundError) as exc:
        raise ParamsError(str(exc)) from exc


def relative(ctx_root: Path, path: Path) -> str:
    """`path` relative to the repository root, as dvc.yaml names it (for eval-set provenance and artifacts)."""
    return path.relative_to(ctx_root).as_posix()
