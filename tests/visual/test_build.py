"""The visual world builder: files, counts, schema, no train/test item overlap, byte-identical rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.jsonl import read_jsonl
from pipelines.visual.build import build_visual_world
from pipelines.visual.language import caption
from pipelines.visual.oracle import grade
from pipelines.visual.render import load_image
from pipelines.visual.scene import Scene

CFG = {"image_size": 24, "min_objects": 1, "max_objects": 4, "n_visual_pool": 30, "n_visual_test": 12,
       "n_caption_pool": 20, "n_scene_text": 20, "n_text_world": 8, "n_sft": 10, "n_bon_prompts": 5,
       "label_noise": 0.2, "error_probs": {"absent_object": 0.3, "wrong_colour": 0.3, "wrong_count": 0.3,
                                           "wrong_relation": 0.3, "omission": 0.3}}
PAIR_KEYS = {"id", "kind", "prompt", "chosen", "rejected", "gold_chosen", "gold_rejected",
             "label_agrees_with_gold", "family", "spec"}


def _text_world(n: int = 12) -> list[dict]:
    return [{"id": f"t{i}", "family": "arithmetic", "prompt": f"What is {i} + 1?", "chosen": str(i + 1),
             "rejected": str(i), "gold_chosen": 1.0, "gold_rejected": 0.0, "spec": {"a": i},
             "label_agrees_with_gold": True} for i in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("visual")
    return out, build_visual_world(CFG, _text_world(), out, seed=3)


def test_files_and_counts(world):
    out, summary = world
    counts = {"visual_pool.jsonl": 30, "visual_test.jsonl": 12, "caption_pool.jsonl": 20, "text_pool.jsonl": 28,
              "sft.jsonl": 10, "bon_prompts.jsonl": 5}
    assert summary["files"] == counts
    for name, n in counts.items():
        assert len(read_jsonl(out / name)) == n
    assert summary["n_images"] == 30 + 12 + 10 + 5 == len(list((out / "images").iterdir()))
    kinds = summary["pairs"]["text_pool.jsonl"]
    assert kinds["scene_text"]["n"] == 20 and kinds["text_world"]["n"] == 8
    json.dumps(summary)


def test_pair_schema_and_gold(world):
    out, _ = world
    for name, kind in (("visual_pool.jsonl", "visual"), ("visual_test.jsonl", "visual"),
                       ("caption_pool.jsonl", "caption"), ("text_pool.jsonl", None)):
        for r in read_jsonl(out / name):
            assert set(r) == PAIR_KEYS | ({"image"} if r["kind"] == "visual" else set()), name
            assert kind is None or r["kind"] == kind
            assert r["chosen"] != r["rejected"] and r["prompt"].strip()
            if r["kind"] == "text_world":
                assert r["id"].startswith("text_world-") and r["family"] == "arithmetic"
                continue
            scene, prompt = Scene.from_dict(r["spec"]["scene"]), r["spec"]["prompt"]
            gold = [round(grade(scene, prompt, r[k])["gold"], 6) for k in ("chosen", "rejected")]
            assert gold == [r["gold_chosen"], r["gold_rejected"]] and gold[0] != gold[1]
            assert r["label_agrees_with_gold"] == (gold[0] > gold[1])
            if r["kind"] == "visual":
                assert r["prompt"] == prompt["question"] and r["family"] == prompt["kind"]
                assert load_image(out / r["image"], 24).shape == (24, 24, 3)
            elif r["kind"] == "caption":
                assert r["prompt"] == caption(scene) + "\n" + prompt["question"]
            else:
                assert r["family"].startswith(("scene_near_", "scene_far_"))


def test_sft_and_bon_records(world):
    out, _ = world
    for r in read_jsonl(out / "sft.jsonl"):
        assert set(r) == {"id", "image", "prompt", "response", "kind"} and (out / r["image"]).is_file()
    for r in read_jsonl(out / "bon_prompts.jsonl"):
        assert set(r) == {"id", "image", "prompt", "family", "spec"} and (out / r["image"]).is_file()
        assert r["prompt"] == r["spec"]["prompt"]["question"]


def test_training_sets_avoid_evaluation_items(world):
    out, _ = world
    def items(name):
        return {(json.dumps(r["spec"]["scene"], sort_keys=True), r["spec"]["prompt"]["question"])
                for r in read_jsonl(out / name) if "scene" in r.get("spec", {})}
    evaluation = items("visual_test.jsonl") | items("bon_prompts.jsonl")
    for name in ("visual_pool.jsonl", "caption_pool.jsonl", "text_pool.jsonl"):
        assert not items(name) & evaluation


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuild_is_byte_identical_and_seed_matters(world, tmp_path):
    out, summary = world
    stale = out / "images" / "visual_pool-99999.png"
    again = build_visual_world(CFG, _text_world(), tmp_path / "a", seed=3)
    assert again == summary and _snapshot(tmp_path / "a") == _snapshot(out)
    stale.write_bytes(b"left over")
    assert build_visual_world(CFG, _text_world(), out, seed=3) == summary
    assert not stale.exists() and _snapshot(tmp_path / "a") == _snapshot(out)
    build_visual_world(CFG, _text_world(), tmp_path / "b", seed=4)
    assert (tmp_path / "b" / "visual_pool.jsonl").read_bytes() != (out / "visual_pool.jsonl").read_bytes()


def test_sets_are_independent_of_other_sizes(world, tmp_path):
    out, _ = world
    build_visual_world({**CFG, "n_sft": 3, "n_caption_pool": 2, "n_visual_pool": 10}, _text_world(), tmp_path, seed=3)
    assert read_jsonl(tmp_path / "visual_pool.jsonl") == read_jsonl(out / "visual_pool.jsonl")[:10]
    assert read_jsonl(tmp_path / "visual_test.jsonl") == read_jsonl(out / "visual_test.jsonl")


@pytest.mark.parametrize("change, needle", [
    ({"n_sft": None}, "'n_sft'"),
    ({"label_noise": 1.5}, "'label_noise'"),
    ({"error_probs": {"wrong_shape": 0.1}}, "'error_probs'"),
    ({"max_objects": 12}, "max_objects"),
])
def test_bad_cfg_names_the_key(tmp_path, change, needle):
    cfg = {k: v for k, v in {**CFG, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=needle):
        build_visual_world(cfg, _text_world(), tmp_path, seed=0)


def test_bad_text_world_record_names_the_key(tmp_path):
    records = _text_world()
    for r in records:
        del r["gold_rejected"]
    with pytest.raises(ValueError, match="'gold_rejected'"):
        build_visual_world(CFG, records, tmp_path, seed=0)


def test_pairs_fall_back_when_draws_tie_and_flip_with_label_noise():
    import numpy as np

    from pipelines.visual.language import parse_facts
    from pipelines.visual.pairs import preference_pair
    from pipelines.visual.prompts import ideal_response, make_prompt
    from pipelines.visual.scene import sample_scene

    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = sample_scene(rng)
        prompt = make_prompt(scene, "describe", rng)
        pair = preference_pair(scene, prompt, rng, {}, label_noise=0.0)  # every draw is correct: a tie
        assert pair["gold_chosen"] == 1.0 > pair["gold_rejected"] and pair["chosen_errors"] == ["correct"]
        assert sorted(parse_facts(pair["chosen"])) == sorted(parse_facts(ideal_response(scene, prompt)))
        flipped = preference_pair(scene, prompt, rng, CFG["error_probs"], label_noise=1.0)
        assert flipped["gold_chosen"] < flipped["gold_rejected"] and flipped["label_agrees_with_gold"] is False
