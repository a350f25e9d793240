"""`build_world`: every split of the simulated preference world from one params dict and a seed."""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from ..template import format_example
from .oracle import gold_reward
from .params import WorldParams
from .sampling import ResponseStyle, TaskSampler, labeled_record

SPLIT_NAMES = ("unlabeled_pairs", "prefs_train", "prefs_test_id", "prefs_test_ood", "prefs_adapt_train",
               "prefs_adapt_test", "sft_train", "sft_val", "eval_prompts", "corpus_train", "corpus_val")
TRAIN_SPLITS = ("unlabeled_pairs", "prefs_train", "prefs_adapt_train", "sft_train", "corpus_train")
_UNIQUE_TRIES = 30


def _split_rng(seed: int, split: str) -> random.Random:
    """An independent stream per split, so resizing one split leaves the others unchanged."""
    return random.Random(f"alignflow-world:{seed}:{split}")


def _pairs(n: int, split: str, rng: random.Random, draw: Callable[[random.Random], Any],
           style_for: Callable[[Any], ResponseStyle], make: Callable[[str, Any, Any, Any], dict]) -> list[dict]:
    """n records built from tasks with two distinct responses each."""
    records: list[dict] = []
    failures = 0
    while len(records) < n:
        task = draw(rng)
        pair = style_for(task).pair(task, rng)
        if pair is None:
            failures += 1
            if failures > 1000:
                raise RuntimeError(f"{split}: error weights keep producing identical response pairs")
            continue
        records.append(make(f"{split}-{len(records):06d}", task, *pair))
    return records


class _WorldBuilder:
    """Holds the params, samplers and styles shared by the split builders."""

    def __init__(self, params: WorldParams, seed: int):
        self.p, self.seed = params, seed
        self.train = TaskSampler(seed, params.heldout_fraction, heldout=False)
        self.heldout = TaskSampler(seed, params.heldout_fraction, heldout=True)
        self.style_id = ResponseStyle(params.error_weights, params.style_corr_train, params.hedge_rate)
        self.style_ood = ResponseStyle(params.error_weights, params.style_corr_ood, params.hedge_rate)

    def unlabeled(self) -> list[dict]:
        def make(rid, task, a, b):
            return {"id": rid, "family": task.family, "prompt": task.prompt,
                    "response_a": a.text, "response_b": b.text, "spec": task.spec}
        rng = _split_rng(self.seed, "unlabeled_pairs")
        return _pairs(self.p.n_unlabeled, "unlabeled_pairs", rng,
                      lambda r: self.train.draw_any(self.p.families, r), lambda t: self.style_id, make)

    def prefs(self, split: str, n: int, sampler: TaskSampler, families: Sequence[str],
              style: ResponseStyle) -> list[dict]:
        rng = _split_rng(self.seed, split)
        return self._labeled(split, n, rng, lambda r: sampler.draw_any(families, r), lambda t: style)

    def prefs_ood(self) -> list[dict]:
        """Held-out OOD family mixed with held-out in-distribution prompts, style correlation reversed."""
        p = self.p

        def draw(r: random.Random):
            if r.random() < p.ood_family_share:
                return self.heldout.draw(p.ood_family, r)
            return self.heldout.draw_any(p.families, r)
        rng = _split_rng(self.seed, "prefs_test_ood")
        return self._labeled("prefs_test_ood", p.n_test_ood, rng, draw, lambda t: self.style_ood)

    def _labeled(self, split, n, rng, draw, style_for) -> list[dict]:
        p = self.p
        return _pairs(n, split, rng, draw, style_for,
                      lambda rid, task, a, b: labeled_record(rid, task, a, b, p.label_temperature,
                                                             p.flip_rate, rng))

    def sft(self, split: str, n: int, sampler: TaskSampler) -> list[dict]:
        rng = _split_rng(self.seed, split)
        out = []
        for i in range(n):
            task = sampler.draw_any(self.p.families, rng)
            resp = self.style_id.sample_mixed(task, rng, self.p.sft_error_rate)
            out.append({"id": f"{split}-{i:06d}", "family": task.family, "prompt": task.prompt,
                        "response": resp.text, "spec": task.spec, "gold": gold_reward(task.spec, resp.text),
                        "error_type": resp.error_type, "style": resp.style})
        return out

    def corpus(self, split: str, n: int, sampler: TaskSampler) -> list[dict]:
        rng = _split_rng(self.seed, split)
        families = [*self.p.families, self.p.adapt_family]
        out = []
        for _ in range(n):
            task = sampler.draw_any(families, rng)
            resp = self.style_id.sample_mixed(task, rng, self.p.corpus_error_rate)
            out.append({"text": format_example(task.prompt, resp.text)})
        return out

    def eval_prompts(self) -> list[dict]:
        """Held-out prompts, unique where the family's held-out space allows it."""
        rng = _split_rng(self.seed, "eval_prompts")
        seen: set[str] = set()
        out = []
        for i in range(self.p.n_eval_prompts):
            for _ in range(_UNIQUE_TRIES):
                task = self.heldout.draw_any(self.p.families, rng)
                if task.prompt not in seen:
                    break
            seen.add(task.prompt)
            out.append({"id": f"eval_prompts-{i:06d}", "family": task.family, "prompt": task.prompt,
                        "spec": task.spec})
        return out


def build_world(params: dict[str, Any] | WorldParams | None, seed: int) -> dict[str, list[dict]]:
    """Build all splits (keys = SPLIT_NAMES); deterministic for a given params dict and seed."""
    p = params if isinstance(params, WorldParams) else WorldParams.from_dict(params)
    b = _WorldBuilder(p, int(seed))
    adapt = [p.adapt_family]
    return {
        "unlabeled_pairs": b.unlabeled(),
        "prefs_train": b.prefs("prefs_train", p.n_train_labeled, b.train, p.families, b.style_id),
        "prefs_test_id": b.prefs("prefs_test_id", p.n_test_id, b.heldout, p.families, b.style_id),
        "prefs_test_ood": b.prefs_ood(),
        "prefs_adapt_train": b.prefs("prefs_adapt_train", p.n_adapt_train, b.train, adapt, b.style_id),
        "prefs_adapt_test": b.prefs("prefs_adapt_test", p.n_adapt_test, b.heldout, adapt, b.style_id),
        "sft_train": b.sft("sft_train", p.n_sft_train, b.train),
        "sft_val": b.sft("sft_val", p.n_sft_val, b.heldout),
        "eval_prompts": b.eval_prompts(),
        "corpus_train": b.corpus("corpus_train", p.n_corpus_train, b.train),
        "corpus_val": b.corpus("corpus_val", p.n_corpus_val, b.heldout),
    }
