"""A simulated preference world with a gold oracle (in the spirit of AlpacaFarm / Gao et al. 2022).

Prompt families produce prompts plus a machine-readable spec; a noisy generator writes responses
with named error types and styles; `gold_reward` grades any text against the spec; a simulated
annotator turns gold rewards into noisy preference labels; `build_world` makes every split.
"""

from .families import FAMILIES, Task, make_task
from .labels import expected_agreement, prob_prefer_a, sample_preference
from .oracle import gold_reward
from .params import DEFAULT_ERROR_WEIGHTS, IN_DISTRIBUTION, WorldParams
from .responses import ERROR_TYPES, STYLES, Response, applicable_error_types, base_text, sample_response
from .schema import validate_splits
from .splits import SPLIT_NAMES, TRAIN_SPLITS, build_world
from .store import write_world
from .summary import world_summary

__all__ = [
    "DEFAULT_ERROR_WEIGHTS", "ERROR_TYPES", "FAMILIES", "IN_DISTRIBUTION", "SPLIT_NAMES", "STYLES",
    "TRAIN_SPLITS", "Response", "Task", "WorldParams", "applicable_error_types", "base_text", "build_world",
    "expected_agreement", "gold_reward", "make_task", "prob_prefer_a", "sample_preference", "sample_response",
    "validate_splits", "world_summary", "write_world",
]
