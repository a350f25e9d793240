"""Build the simulated visual world: images, preference pools, SFT data and best-of-n prompts.

Every set draws from its own random stream (seeded by (seed, stream id)), so changing the size
of one set never changes another, and each set is i.i.d.: any prefix of a pool is a fair
sample of it. The evaluation sets (visual_test, bon_prompts) are drawn first and untouched;
the training sets (visual_pool, caption_pool, scene_text pairs, sft) redraw any item -- an
(scene, question) pair -- that is also an evaluation item, so no test image is trained on
with the same question. The number of such redraws is reported in the summary ("resampled");
they slightly thin out one-object scenes in training sets (their item space is small).
Caption and scene_text scenes differ from the visual ones by stream only (not checked), so
the three training sources cover the same scene distribution.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipelines.data.jsonl import write_jsonl_atomic

from .checks import require_keys
from .generator import check_error_probs
from .pairs import caption_record, scene_text_record, text_world_record, visual_record
from .prompts import PROMPT_KINDS, QUESTION_KINDS, ideal_response, make_prompt, unique_shapes
from .render import render, save_png
from .scene import Scene, sample_scene

CFG_KEYS = ("image_size", "min_objects", "max_objects", "n_visual_pool", "n_visual_test", "n_caption_pool",
            "n_scene_text", "n_text_world", "n_sft", "n_bon_prompts", "label_noise", "error_probs")
STREAMS = {"visual_test": 1, "bon": 2, "visual_pool": 3, "caption": 4, "scene_text": 5, "text_world": 6,
           "sft": 7, "text_pool": 8}
SFT_DESCRIBE_SHARE = 0.5  # the rest are questions, kinds uniform
NEAR_SHARE = 0.5  # scene_text pairs that keep positions (the rest list items only)
MAX_REDRAWS = 1000
Item = tuple[Scene, dict[str, Any]]


def check_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return the cfg values this builder uses; ValueError names a missing or bad key."""
    require_keys(cfg, CFG_KEYS, "visual world cfg")
    for key in CFG_KEYS[:10]:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"visual world cfg key {key!r} must be an int >= 0, got {value!r}")
    if cfg["image_size"] < 9:
        raise ValueError(f"visual world cfg key 'image_size' must be >= 9, got {cfg['image_size']}")
    if not 1 <= cfg["min_objects"] <= cfg["max_objects"] <= 9:
        raise ValueError(f"visual world cfg keys 'min_objects'/'max_objects' need 1 <= min <= max <= 9, "
                         f"got {cfg['min_objects']}, {cfg['max_objects']}")
    noise = cfg["label_noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
        raise ValueError(f"visual world cfg key 'label_noise' must be in [0, 1], got {noise!r}")
    try:
        check_error_probs(cfg["error_probs"])
    except ValueError as exc:
        raise ValueError(f"visual world cfg key 'error_probs': {exc}") from None
    return {key: cfg[key] for key in CFG_KEYS}


def _stream(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([STREAMS[name], seed])


class _Sampler:
    """Draws (scene, prompt) items for one set, redrawing any item in `excluded`."""

    def __init__(self, cfg: dict[str, Any], rng: np.random.Generator, excluded: set):
        self.cfg, self.rng, self.excluded, self.redraws = cfg, rng, excluded, 0

    def draw(self, choose_kind: Callable[[Scene, np.random.Generator], str]) -> Item:
        for _ in range(MAX_REDRAWS):
            scene = sample_scene(self.rng, self.cfg["min_objects"], self.cfg["max_objects"])
            prompt = make_prompt(scene, choose_kind(scene, self.rng), self.rng)
            if (scene, prompt["question"]) not in self.excluded:
                return scene, prompt
            self.redraws += 1
        raise RuntimeError(f"{MAX_REDRAWS} draws in a row were evaluation items: the scene space is too "
                           f"small for these set sizes (min/max objects {self.cfg['min_objects']}/"
                           f"{self.cfg['max_objects']})")


def _any_kind(scene: Scene, rng: np.random.Generator) -> str:
    return PROMPT_KINDS[int(rng.integers(len(PROMPT_KINDS)))]


def _sft_kind(scene: Scene, rng: np.random.Generator) -> str:
    if rng.random() < SFT_DESCRIBE_SHARE:
        return "describe"
    return QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))]


def _far_kind(scene: Scene, rng: np.random.Generator) -> str:
    kinds = ["count", "attribute"] if unique_shapes(scene) else ["count"]
    return kinds[int(rng.integers(len(kinds)))]


class _Images:
    """Renders and saves each set's images with that set's own noise stream."""

    def __init__(self, out_dir: Path, image_size: int, seed: int):
        self.out_dir, self.image_size, self.seed, self.written = out_dir, image_size, seed, set()
        self.noise: dict[str, np.random.Generator] = {}

    def save(self, set_name: str, rid: str, scene: Scene) -> str:
        if set_name not in self.noise:
            self.noise[set_name] = np.random.default_rng([STREAMS[set_name], self.seed, 1])
        rel = f"images/{rid}.png"
        save_png(render(scene, self.image_size, self.noise[set_name]), self.out_dir / rel)
        self.written.add(rel)
        return rel

    def remove_stale(self) -> None:
        """Drop PNGs a previous, larger build left, so images/ holds exactly what the records name."""
        for path in sorted((self.out_dir / "images").glob("*.png")):
            if f"images/{path.name}" not in self.written:
                path.unlink()


def _pair_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for kind in sorted({r["kind"] for r in records}):
        group = [r for r in records if r["kind"] == kind]
        agree = [r["label_agrees_with_gold"] for r in group if r["label_agrees_with_gold"] is not None]
        errors: Counter = Counter()
        for r in group:
            for side in ("chosen_errors", "rejected_errors"):
                errors.update(r["spec"].get(side, []))
        stats[kind] = {
            "n": len(group),
            "families": dict(sorted(Counter(r["family"] for r in group).items())),
            "label_agreement": sum(agree) / len(agree) if agree else None,
            "mean_gold_chosen": round(float(np.mean([r["gold_chosen"] for r in group])), 6),
            "mean_gold_rejected": round(float(np.mean([r["gold_rejected"] for r in group])), 6),
            "error_types": dict(sorted(errors.items())),
        }
    return stats


def build_visual_world(cfg: dict[str, Any], text_world_records: list[dict[str, Any]], out_dir: Path,
                       seed: int) -> dict[str, Any]:
    """Write the visual world's files into out_dir (see the module docstring); return a summary."""
    cfg = check_cfg(cfg)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    out_dir = Path(out_dir)
    probs, noise = cfg["error_probs"], cfg["label_noise"]
    images = _Images(out_dir, cfg["image_size"], seed)
    excluded: set = set()
    redraws: dict[str, int] = {}

    def items(name: str, n: int, choose_kind=_any_kind, exclude: bool = True) -> list[Item]:
        sampler = _Sampler(cfg, _stream(seed, name), excluded if exclude else set())
        drawn = [sampler.draw(choose_kind) for _ in range(n)]
        redraws[name] = sampler.redraws
        return drawn

    # evaluation sets first: their distribution is never bent by exclusions
    test_items = items("visual_test", cfg["n_visual_test"], exclude=False)
    bon_items = items("bon", cfg["n_bon_prompts"], exclude=False)
    excluded.update((scene, prompt["question"]) for scene, prompt in test_items + bon_items)

    def visual(name: str, drawn: list[Item]) -> list[dict[str, Any]]:
        rng = np.random.default_rng([STREAMS[name], seed, 2])  # responses and labels, apart from the items
        out = []
        for i, (scene, prompt) in enumerate(drawn):
            rid = f"{name}-{i:05d}"
            out.append(visual_record(rid, scene, prompt, images.save(name, rid, scene), rng, probs, noise))
        return out

    visual_test = visual("visual_test", test_items)
    visual_pool = visual("visual_pool", items("visual_pool", cfg["n_visual_pool"]))

    rng = np.random.default_rng([STREAMS["caption"], seed, 2])
    caption_pool = [caption_record(f"caption-{i:05d}", scene, prompt, rng, probs, noise)
                    for i, (scene, prompt) in enumerate(items("caption", cfg["n_caption_pool"]))]

    rng = _stream(seed, "scene_text")
    sampler = _Sampler(cfg, rng, excluded)
    scene_text = []
    for i in range(cfg["n_scene_text"]):
        relevance = "near" if rng.random() < NEAR_SHARE else "far"
        scene, prompt = sampler.draw(_any_kind if relevance == "near" else _far_kind)
        scene_text.append(scene_text_record(f"scene_text-{i:05d}", scene, prompt, relevance, rng, probs, noise))
    redraws["scene_text"] = sampler.redraws

    rng = _stream(seed, "text_world")
    picked = rng.permutation(len(text_world_records))[: cfg["n_text_world"]]
    text_world = [text_world_record(text_world_records[int(i)], int(i)) for i in picked]
    text_pool = scene_text + text_world
    text_pool = [text_pool[int(i)] for i in _stream(seed, "text_pool").permutation(len(text_pool))]

    sft = []
    for i, (scene, prompt) in enumerate(items("sft", cfg["n_sft"], _sft_kind)):
        rid = f"sft-{i:05d}"
        sft.append({"id": rid, "image": images.save("sft", rid, scene), "prompt": prompt["question"],
                    "response": ideal_response(scene, prompt), "kind": prompt["kind"]})

    bon = []
    for i, (scene, prompt) in enumerate(bon_items):
        rid = f"bon-{i:05d}"
        bon.append({"id": rid, "image": images.save("bon", rid, scene), "prompt": prompt["question"],
                    "family": prompt["kind"], "spec": {"scene": scene.to_dict(), "prompt": prompt}})

    files = {"visual_pool.jsonl": visual_pool, "visual_test.jsonl": visual_test, "caption_pool.jsonl": caption_pool,
             "text_pool.jsonl": text_pool, "sft.jsonl": sft, "bon_prompts.jsonl": bon}
    for name, records in files.items():
        write_jsonl_atomic(records, out_dir / name)
    images.remove_stale()
    pair_files = ("visual_pool.jsonl", "visual_test.jsonl", "caption_pool.jsonl", "text_pool.jsonl")
    return {
        "seed": seed,
        "files": {name: len(records) for name, records in files.items()},
        "n_images": len(images.written),
        "pairs": {name: _pair_stats(files[name]) for name in pair_files},
        "sft_kinds": dict(sorted(Counter(r["kind"] for r in sft).items())),
        "bon_families": dict(sorted(Counter(r["family"] for r in bon).items())),
        "resampled": redraws,
        "text_world_available": len(text_world_records),
    }
