"""World parameters with defaults sized for a 2-core laptop; unknown keys are rejected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .families import FAMILIES
from .responses import ERROR_TYPES

IN_DISTRIBUTION = ("arithmetic", "list_ops", "context_qa", "format", "summary", "refuse", "comply")
DEFAULT_ERROR_WEIGHTS = {
    "correct": 0.30, "wrong_answer": 0.15, "partial_answer": 0.10, "verbose_padding": 0.12,
    "format_violation": 0.08, "over_refusal": 0.10, "unsafe_compliance": 0.10, "off_topic": 0.05,
}
_COUNTS = ("n_unlabeled", "n_train_labeled", "n_test_id", "n_test_ood", "n_adapt_train", "n_adapt_test",
           "n_sft_train", "n_sft_val", "n_eval_prompts", "n_corpus_train", "n_corpus_val")
_PROBS = ("flip_rate", "sft_error_rate", "corpus_error_rate", "hedge_rate", "ood_family_share")


@dataclass(frozen=True)
class WorldParams:
    """Every knob of the simulated world (split sizes, annotator noise, style shift, families)."""

    n_unlabeled: int = 8000
    n_train_labeled: int = 2000
    n_test_id: int = 1000
    n_test_ood: int = 1000
    n_adapt_train: int = 64
    n_adapt_test: int = 500
    n_sft_train: int = 4000
    n_sft_val: int = 500
    n_eval_prompts: int = 500
    n_corpus_train: int = 20000
    n_corpus_val: int = 1000
    label_temperature: float = 0.1
    flip_rate: float = 0.1
    sft_error_rate: float = 0.2
    corpus_error_rate: float = 0.5
    style_corr_train: tuple[float, float] = (0.7, 0.2)  # P(polite | correct), P(polite | error)
    style_corr_ood: tuple[float, float] = (0.2, 0.7)  # reversed in the OOD test split
    hedge_rate: float = 0.1
    families: tuple[str, ...] = IN_DISTRIBUTION
    ood_family: str = "counting"
    adapt_family: str = "unit_convert"
    ood_family_share: float = 0.5  # share of prefs_test_ood drawn from the OOD family
    heldout_fraction: float = 0.2  # share of the prompt space reserved for eval/test splits
    error_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ERROR_WEIGHTS))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "WorldParams":
        """Build from a (possibly partial) dict; an unknown key raises ValueError naming it."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(f"unknown world param {key!r}; known: {sorted(known)}")
        for key in ("style_corr_train", "style_corr_ood", "families"):
            if key in d:
                d[key] = tuple(d[key])
        if "error_weights" in d:
            d["error_weights"] = {str(k): float(v) for k, v in dict(d["error_weights"]).items()}
        params = cls(**d)
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("style_corr_train", "style_corr_ood", "families"):
            out[key] = list(out[key])
        return out

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        for key in _COUNTS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"world param {key!r} must be a non-negative int, got {value!r}")
        for key in _PROBS:
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ValueError(f"world param {key!r} must be in [0, 1], got {getattr(self, key)!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"world param 'heldout_fraction' must be in (0, 1), got {self.heldout_fraction!r}")
        if float(self.label_temperature) < 0:
            raise ValueError(f"world param 'label_temperature' must be >= 0, got {self.label_temperature!r}")
        for key in ("style_corr_train", "style_corr_ood"):
            pair = getattr(self, key)
            if len(pair) != 2 or not all(0.0 <= float(p) <= 1.0 for p in pair):
                raise ValueError(f"world param {key!r} must be two probabilities, got {pair!r}")
        if not self.families:
            raise ValueError("world param 'families' must name at least one family")
        for name in (*self.families, self.ood_family, self.adapt_family):
            if name not in FAMILIES:
                raise ValueError(f"unknown family {name!r} in world params; known: {sorted(FAMILIES)}")
        if len(set(self.families)) != len(self.families):
            raise ValueError("world param 'families' has duplicates")
        if self.ood_family in self.families or self.adapt_family in self.families:
            raise ValueError("world params 'ood_family' and 'adapt_family' must not be in 'families'")
        if self.ood_family == self.adapt_family:
            raise ValueError("world params 'ood_family' and 'adapt_family' must differ")
        for key, weight in self.error_weights.items():
            if key not in ERROR_TYPES:
                raise ValueError(f"unknown error type {key!r} in 'error_weights'; known: {list(ERROR_TYPES)}")
            if weight < 0:
                raise ValueError(f"error weight {key!r} must be >= 0, got {weight!r}")
        if sum(w for k, w in self.error_weights.items() if k != "correct") <= 0:
            raise ValueError("world param 'error_weights' needs a positive weight on some error type")
