"""build_world: sizes, no held-out prompt leakage, determinism, params validation, writing."""

import json

import pytest

from pipelines.data.jsonl import read_jsonl
from pipelines.data.template import format_prompt
from pipelines.data.world import sampling
from pipelines.data.world import (SPLIT_NAMES, TRAIN_SPLITS, WorldParams, build_world, validate_splits,
                                  world_summary, write_world)

SMALL = {"n_unlabeled": 400, "n_train_labeled": 300, "n_test_id": 200, "n_test_ood": 200, "n_adapt_train": 16,
         "n_adapt_test": 60, "n_sft_train": 200, "n_sft_val": 50, "n_eval_prompts": 80,
         "n_corpus_train": 500, "n_corpus_val": 60}
SIZE_KEY = {"unlabeled_pairs": "n_unlabeled", "prefs_train": "n_train_labeled", "prefs_test_id": "n_test_id",
            "prefs_test_ood": "n_test_ood", "prefs_adapt_train": "n_adapt_train",
            "prefs_adapt_test": "n_adapt_test", "sft_train": "n_sft_train", "sft_val": "n_sft_val",
            "eval_prompts": "n_eval_prompts", "corpus_train": "n_corpus_train", "corpus_val": "n_corpus_val"}


@pytest.fixture(scope="module")
def world():
    return build_world(SMALL, seed=3)


def test_split_names_and_sizes(world):
    assert set(world) == set(SPLIT_NAMES)
    for split, key in SIZE_KEY.items():
        assert len(world[split]) == SMALL[key], split
    validate_splits(world)


def _corpus_prompt(text):
    return text.split("\nAssistant:", 1)[0][len("User: "):]


def test_no_prompt_leakage(world):
    train = {r["prompt"] for s in TRAIN_SPLITS if s != "corpus_train" for r in world[s]}
    train |= {_corpus_prompt(r["text"]) for r in world["corpus_train"]}
    for split in ("prefs_test_id", "prefs_test_ood", "prefs_adapt_test", "eval_prompts", "sft_val"):
        assert not {r["prompt"] for r in world[split]} & train, split
    val = {_corpus_prompt(r["text"]) for r in world["corpus_val"]}
    assert not val & train


def test_families_per_split(world):
    p = WorldParams()
    assert {r["family"] for r in world["eval_prompts"]} <= set(p.families)
    assert {r["family"] for r in world["prefs_train"]} == set(p.families)
    assert {r["family"] for r in world["prefs_adapt_train"]} == {p.adapt_family}
    ood = {r["family"] for r in world["prefs_test_ood"]}
    assert p.ood_family in ood and ood - {p.ood_family}
    corpus_prompts = {_corpus_prompt(r["text"]) for r in world["corpus_train"]}
    assert not any(r["prompt"] in corpus_prompts for r in world["prefs_test_ood"] if r["family"] == p.ood_family)


def test_records_are_consistent(world):
    for r in world["prefs_train"]:
        assert r["chosen"] != r["rejected"]
        if r["gold_chosen"] == r["gold_rejected"]:
            assert r["label_agrees_with_gold"] is None
        else:
            assert r["label_agrees_with_gold"] == (r["gold_chosen"] > r["gold_rejected"])
    assert all(r["response_a"] != r["response_b"] for r in world["unlabeled_pairs"])
    assert all("gold_chosen" not in r and "chosen" not in r for r in world["unlabeled_pairs"])
    assert all(r["text"].startswith("User: ") and "\nAssistant: " in r["text"] for r in world["corpus_train"])
    assert len({r["prompt"] for r in world["eval_prompts"]}) == len(world["eval_prompts"])
    json.dumps(world)  # everything JSON-serialisable


def test_style_correlation_reverses_in_ood(world):
    summary = world_summary(world, SMALL)
    assert summary["prefs_train/polite_rate_correct"] > summary["prefs_train/polite_rate_error"] + 0.2
    assert summary["prefs_test_ood/polite_rate_correct"] + 0.2 < summary["prefs_test_ood/polite_rate_error"]


def test_sft_is_mostly_correct(world):
    share = sum(r["error_type"] == "correct" for r in world["sft_train"]) / len(world["sft_train"])
    assert 0.65 < share < 0.95  # default sft_error_rate 0.2
    clean = build_world({**SMALL, "sft_error_rate": 0.0}, seed=3)
    assert all(r["error_type"] == "correct" for r in clean["sft_train"])


def test_deterministic_for_seed():
    a = build_world(SMALL, seed=11)
    b = build_world(dict(SMALL), seed=11)
    c = build_world(SMALL, seed=12)
    assert a == b
    assert a["prefs_train"] != c["prefs_train"]


def test_unknown_param_raises():
    with pytest.raises(ValueError, match="n_trian_labeled"):
        build_world({"n_trian_labeled": 10}, seed=0)
    with pytest.raises(ValueError, match="flip_rate"):
        WorldParams.from_dict({"flip_rate": 1.5})
    with pytest.raises(ValueError, match="bogus"):
        WorldParams.from_dict({"error_weights": {"bogus": 1.0}})
    with pytest.raises(ValueError, match="ood_family"):
        WorldParams.from_dict({"ood_family": "arithmetic"})


def test_summary_agreement_matches_expectation():
    world = build_world({**SMALL, "n_train_labeled": 2000}, seed=5)
    summary = world_summary(world, SMALL)
    assert summary["count/prefs_train"] == 2000
    assert summary["flip_rate"] == 0.1
    gap = abs(summary["prefs_train/label_agreement"] - summary["prefs_train/expected_agreement"])
    assert gap < 0.04
    assert summary["gold_mean/sft_train"] > summary["gold_mean/prefs_train"]
    assert sum(v for k, v in summary.items() if k.startswith("error_share/prefs_train/")) == pytest.approx(1.0)
    json.dumps(summary)


def test_write_world_round_trip(world, tmp_path):
    paths = write_world(world, tmp_path / "world")
    assert sorted(p.name for p in paths.values()) == sorted(f"{s}.jsonl" for s in SPLIT_NAMES)
    assert read_jsonl(paths["prefs_train"]) == world["prefs_train"]
    assert not list((tmp_path / "world").glob(".*tmp"))


def test_write_world_validates_before_writing(world, tmp_path):
    broken = dict(world)
    broken["sft_val"] = [*world["sft_val"][:-1], {"id": "x"}]
    with pytest.raises(ValueError, match="sft_val"):
        write_world(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    leaked = dict(world)
    leaked["eval_prompts"] = [*world["eval_prompts"], {**world["eval_prompts"][0],
                                                       "prompt": world["prefs_train"][0]["prompt"]}]
    with pytest.raises(ValueError, match="eval_prompts"):
        write_world(leaked, tmp_path / "out")


def test_default_world_is_cheap_and_short(monkeypatch):
    """The default world draws few more tasks than it keeps, and its texts stay short.

    Counting draws instead of timing the build keeps the check exact on a busy machine: a sampler
    whose rejections blow up (identical response pairs, duplicate prompts) fails it, at any load.
    """
    draws = {"tasks": 0, "pairs": 0}
    draw, pair = sampling.TaskSampler.draw, sampling.ResponseStyle.pair

    def counted_draw(self, *args, **kwargs):
        draws["tasks"] += 1
        return draw(self, *args, **kwargs)

    def counted_pair(self, *args, **kwargs):
        draws["pairs"] += 1
        return pair(self, *args, **kwargs)

    monkeypatch.setattr(sampling.TaskSampler, "draw", counted_draw)
    monkeypatch.setattr(sampling.ResponseStyle, "pair", counted_pair)
    world = build_world({}, seed=0)
    records = sum(len(rows) for rows in world.values())
    pair_records = sum(len(world[s]) for s in SPLIT_NAMES if s == "unlabeled_pairs" or s.startswith("prefs_"))
    assert records > 30_000  # the default sizes, so the ratios below are measured at scale
    assert draws["tasks"] <= 1.02 * records and draws["pairs"] <= 1.02 * pair_records
    for r in world["prefs_train"]:
        assert len(r["prompt"].split()) < 40
        assert len(r["chosen"].split()) <= 42 and len(r["rejected"].split()) <= 42
    assert format_prompt(world["eval_prompts"][0]["prompt"]).endswith("\nAssistant:")
