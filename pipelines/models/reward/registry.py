"""One home for every reward model: name -> how to load it as a scorer.

Stages never name a reward model in code: they iterate over the names a profile lists and look
each one up here. A new reward model is one module (its model and a `load` function returning a
`RewardScorer`), one `register(RewardModelEntry(...))` call below, and one profile entry.
Text models take prompt strings; visual ones take the record dicts of the visual pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch


class RewardScorer(Protocol):
    """A loaded reward model: what policy stages, comparisons and best-of-n need from it."""

    def score(self, prompts: Sequence, responses: Sequence[str]) -> torch.Tensor:
        """One reward per (prompt, response); higher is better."""

    def prob_first_better(self, prompts: Sequence, a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
        """P(a[i] is better than b[i]) per pair."""

    def choose_best(self, prompts: Sequence, candidates: Sequence[Sequence[str]]) -> list[int]:
        """Index of the best candidate per prompt (the model's best-of-n pick)."""


@dataclass(frozen=True)
class RewardModelEntry:
    """A kind of reward model. `load(model_dir, **context)` gives a scorer; the optional
    `finetune(scorer, records, cfg, **options)` trains one in place on preference records
    (what the adaptation stage needs); `label` and `pick_rule` name it in tables and plots."""

    name: str
    modality: str  # "text" | "visual"
    load: Callable[..., RewardScorer]
    description: str
    label: str = ""
    pick_rule: str = ""
    finetune: Callable[..., None] | None = None

    @property
    def title(self) -> str:
        return self.label or self.name.upper()


_ENTRIES: dict[str, RewardModelEntry] = {}


def register(entry: RewardModelEntry) -> RewardModelEntry:
    """Add a reward model; a second, different entry under a taken name is an error."""
    if entry.modality not in ("text", "visual"):
        raise ValueError(f"reward model {entry.name!r}: modality must be 'text' or 'visual', got {entry.modality!r}")
    known = _ENTRIES.get(entry.name)
    if known is not None and known != entry:
        raise ValueError(f"reward model {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry (tests that register a toy model clean up with this)."""
    _ENTRIES.pop(name, None)


def names() -> list[str]:
    return sorted(_ENTRIES)


def get(name: str) -> RewardModelEntry:
    """The entry called `name`, or a clear error listing the known ones."""
    try:
        return _ENTRIES[name]
    except KeyError:
        raise KeyError(f"unknown reward model {name!r}; known: {', '.join(names()) or 'none'}") from None


def load(name: str, model_dir: Path, **context) -> RewardScorer:
    """Load the reward model `name` saved in `model_dir` (context: batch_size, references, ...)."""
    return get(name).load(Path(model_dir), **context)


def load_many(model_dirs: dict[str, Path], wanted: Sequence[str], **context) -> dict[str, RewardScorer]:
    """name -> scorer for each of `wanted`, in that order; each must have a folder in `model_dirs`."""
    missing = [n for n in wanted if n not in model_dirs]
    if missing:
        raise ValueError(f"reward model(s) {', '.join(missing)} named but no model folder given "
                         f"(given: {', '.join(model_dirs) or 'none'})")
    return {n: load(n, model_dirs[n], **context) for n in wanted}


def _register_text_models() -> None:
    from pipelines.models.reward import scorers

    register(RewardModelEntry(
        name="gram", modality="text", load=scorers.load_gram, finetune=scorers.finetune_gram, label="GRAM",
        pick_rule="knockout",
        description="generative A/B judge; score = swap-averaged P(beats the prompt's reference response)"))
    register(RewardModelEntry(
        name="bt", modality="text", load=scorers.load_bt, finetune=scorers.finetune_bt, label="BT",
        pick_rule="argmax", description="Bradley-Terry scalar reward on the same backbone"))


def _load_visual(model_dir: Path, **context) -> RewardScorer:
    from pipelines.models.reward.visual import load_scorer  # LLaVA code loads only when a visual RM is used

    return load_scorer(model_dir, **context)


def _register_visual_models() -> None:
    register(RewardModelEntry(
        name="visual_rm", modality="visual", load=_load_visual, label="visual RM", pick_rule="argmax",
        description="LLaVA backbone + bias-free scalar head on the last token (RoVRM's readout); "
                    "scores image + prompt + response records; needs `images` (record -> pixels)"))


_register_text_models()
_register_visual_models()
