"""Drawing tasks from the train or held-out side of the prompt space, and rendering pairs.

The prompt space is partitioned by a seeded hash of the prompt text, so a held-out (eval/test)
prompt can never be drawn for a train split, whatever the split sizes are.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Sequence

from .families import Task, make_task
from .labels import sample_preference
from .oracle import gold_reward
from .responses import Response, sample_response

_MAX_TRIES = 2000


def is_heldout(prompt: str, seed: int, fraction: float) -> bool:
    """Stable, seed-dependent assignment of a prompt to the held-out side."""
    digest = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction


class TaskSampler:
    """Draws tasks of given families from one side (train or held-out) of the prompt space."""

    def __init__(self, seed: int, heldout_fraction: float, heldout: bool):
        self.seed, self.fraction, self.heldout = seed, heldout_fraction, heldout

    def draw(self, family: str, rng: random.Random) -> Task:
        """Rejection-sample a task of `family` whose prompt lies on this sampler's side."""
        for _ in range(_MAX_TRIES):
            task = make_task(family, rng)
            if is_heldout(task.prompt, self.seed, self.fraction) == self.heldout:
                return task
        raise RuntimeError(f"could not draw a {'held-out' if self.heldout else 'train'} {family!r} prompt")

    def draw_any(self, families: Sequence[str], rng: random.Random) -> Task:
        """Draw from a uniformly chosen family."""
        return self.draw(rng.choice(list(families)), rng)


class ResponseStyle:
    """How responses are rendered for one split: error mix and the polite-style correlation."""

    def __init__(self, error_weights: dict[str, float], polite_rates: tuple[float, float], hedge_rate: float):
        self.error_weights, self.polite_rates, self.hedge_rate = error_weights, polite_rates, hedge_rate

    def sample(self, task: Task, rng: random.Random, error_type: str | None = None) -> Response:
        return sample_response(task, self.error_weights, self.polite_rates, self.hedge_rate, rng, error_type)

    def sample_mixed(self, task: Task, rng: random.Random, error_rate: float) -> Response:
        """Correct with probability 1 - error_rate, otherwise an error type from the weights."""
        if rng.random() >= error_rate:
            return self.sample(task, rng, "correct")
        errors = {k: w for k, w in self.error_weights.items() if k != "correct"}
        return sample_response(task, errors, self.polite_rates, self.hedge_rate, rng)

    def pair(self, task: Task, rng: random.Random, tries: int = 10) -> tuple[Response, Response] | None:
        """Two responses with different text, or None if the task keeps producing identical ones."""
        a = self.sample(task, rng)
        for _ in range(tries):
            b = self.sample(task, rng)
            if b.text != a.text:
                return a, b
        return None


def labeled_record(record_id: str, task: Task, a: Response, b: Response, temperature: float,
                   flip_rate: float, rng: random.Random) -> dict[str, Any]:
    """Score both responses with the oracle and let the simulated annotator pick one."""
    gold_a, gold_b = gold_reward(task.spec, a.text), gold_reward(task.spec, b.text)
    if not sample_preference(gold_a, gold_b, temperature, flip_rate, rng):
        a, b, gold_a, gold_b = b, a, gold_b, gold_a
    return {
        "id": record_id, "family": task.family, "prompt": task.prompt,
        "chosen": a.text, "rejected": b.text, "spec": task.spec,
        "gold_chosen": gold_a, "gold_rejected": gold_b,
        "label_agrees_with_gold": None if gold_a == gold_b else gold_a > gold_b,
        "chosen_error_type": a.error_type, "rejected_error_type": b.error_type,
        "chosen_style": a.style, "rejected_style": b.style,
    }
