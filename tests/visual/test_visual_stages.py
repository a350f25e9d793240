"""The visual (RoVRM) stages end to end on a tiny world: world -> policy -> OT selection -> reward models
-> ablations -> comparison, plus real visual pairs swapped in and the errors bad params or files give."""
from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from alignflow.runtime.errors import ParamsError
from tests.project import run_stage
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.visual.render import save_png
from stages import rovrm, rovrm_ablations, rovrm_compare, visual_policy, visual_select, visual_world

PHASE = {"lr": 0.001, "weight_decay": 0.0, "batch_size": 8, "log_every": 5}
# one pass over the 8 text, 10 caption and 12 visual pairs the tiny world gives each phase
PHASES = {"text": {"train": {**PHASE, "max_steps": 1, "warmup_steps": 0}},
          "caption": {"train": {**PHASE, "max_steps": 2, "warmup_steps": 1}},
          "visual": {"train": {**PHASE, "max_steps": 2, "warmup_steps": 1}}}
VISUAL = {
    "world": {"image_size": 24, "min_objects": 1, "max_objects": 3, "n_visual_pool": 30, "n_visual_test": 16,
              "n_caption_pool": 30, "n_scene_text": 20, "n_text_world": 10, "n_sft": 24, "n_bon_prompts": 3,
              "label_noise": 0.1, "error_probs": {"absent_object": 0.3, "wrong_colour": 0.3, "wrong_count": 0.3,
                                                  "wrong_relation": 0.3, "omission": 0.3}},
    "real": {"pool": None, "test": None, "image_root": None},
    "policy": {"init": None, "vocab_size": 400, "max_length": 128,
               "model": {"vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 24, "patch_size": 8},
                         "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "max_position_embeddings": 160}},
               "train": {"lr": 0.001, "max_steps": 6, "batch_size": 8, "warmup_steps": 1, "log_every": 3},
               "eval": {"n_prompts": 4, "max_new_tokens": 8}},
    "select": {"visual_pairs": "pool", "policy_pairs": {"n_samples": 6, "per_prompt": 2, "temperature": 1.0,
                                                          "max_new_tokens": 12},
               "n_visual": 12, "k_caption": 10, "k_text": 8, "solver": "auto", "reg": 0.05,
               "max_dense_entries": 16_000_000, "batch_size": 8192, "embed_batch_size": 16},
    "rm": {"max_length": 128, "likelihood_anchor": True, "phases": PHASES,
           "eval": {"n_pairs": 16, "batch_size": 16, "bootstrap": 50}},
    "ablations": ["no_text", "random"],
    "best_of_n": {"ns": [1, 2], "n_prompts": 3, "temperature": 1.0, "max_new_tokens": 8, "bootstrap": 50},
}
PARAMS = {"seed": 0, "profile": "unit", "visual_seed": 0, "visual": VISUAL}


def _text_world(n: int) -> list[dict]:
    return [{"id": f"prefs_train-{i:06d}", "family": "arithmetic", "prompt": f"What is {i} plus {i}?",
             "chosen": f"{i} plus {i} is {2 * i}.", "rejected": f"The answer is {2 * i + 1}.",
             "gold_chosen": 1.0, "gold_rejected": 0.0, "spec": {"family": "arithmetic"}} for i in range(n)]


def _run(root, name, fn, params=PARAMS):
    return run_stage(root, name, fn, params)


def _metrics(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("visual-project")
    write_jsonl_atomic(_text_world(12), root / "data/prefs/train.jsonl")
    _run(root, "visual_world", visual_world.run)
    _run(root, "visual_policy", visual_policy.run)
    _run(root, "visual_select", visual_select.run)
    for name in ("rovrm@rovrm", "rovrm@rovrm_visual_only"):
        _run(root, name, rovrm.run)
    _run(root, "rovrm_ablations", rovrm_ablations.run)
    _run(root, "rovrm_compare", rovrm_compare.run)
    return root


def test_world_and_policy(project):
    world = _metrics(project / "data/visual/metrics.json")
    assert world["files"]["visual_pool.jsonl"] == 30 and world["real_pairs"] == {}
    policy = _metrics(project / "models/visual_policy/metrics.json")
    assert policy["train_steps"] == 6 and policy["image_tokens"] == 9
    assert 0.0 <= policy["greedy/hallucination_rate"] <= 1.0 and 0.0 <= policy["greedy/recall"] <= 1.0
    assert (project / "models/visual_policy/model/model.safetensors").is_file()


def test_selection_is_chained_and_baselines_keep_equal_k(project):
    sel = json.loads((project / "data/visual_select/selections.json").read_text())
    assert set(sel) == {"ot", "random", "centroid", "all"}
    for method in ("ot", "random", "centroid"):
        assert len(sel[method]["caption"]) == 10 and len(sel[method]["text"]) == 8
    assert len(sel["all"]["caption"]) == 30 and len(sel["all"]["text"]) == 30
    m = _metrics(project / "data/visual_select/metrics.json")
    assert m["n_visual"] == 12 and 0.0 <= m["ot/text_scene_share"] <= 1.0 and m["ot/caption_distance"] >= 0
    assert sum(1 for _ in open(project / "data/visual_select/visual_train.jsonl")) == 12


def test_reward_models_train_their_phases_and_gate(project):
    m = _metrics(project / "models/rovrm/metrics.json")
    assert m["phases"] == ["text", "caption", "visual"]
    assert (m["text/pairs"], m["caption/pairs"], m["visual/pairs"]) == (8, 10, 12)
    assert set(m["gate"]) >= {"passed", "metric", "value", "threshold"} and m["test_visual/n"] == 16
    base = _metrics(project / "models/rovrm_visual_only/metrics.json")
    assert base["phases"] == ["visual"] and base["train_steps"] == 2
    ab = _metrics(project / "models/rovrm_ablations/metrics.json")
    assert ab["no_text/phases"] == ["caption", "visual"] and "random/test_visual/acc_gold" in ab
    # each ablation against RoVRM on the same pairs: RoVRM's own accuracy equals its stage's
    assert ab["acc/rovrm"] == pytest.approx(m["test_visual/acc_gold"], abs=1e-4) and ab["acc/n_pairs"] == 16
    for variant in ("no_text", "random"):
        assert 0.0 <= ab[f"acc/{variant}"] <= 1.0 and isinstance(ab[f"claims/rovrm_more_accurate_than_{variant}"], bool)
    assert (project / "models/rovrm/model/reward_head.safetensors").is_file()


def test_compare_reports_accuracy_best_of_n_and_claims(project):
    m = _metrics(project / "models/rovrm_compare/metrics.json")
    for name in ("rovrm", "visual_only"):
        assert 0.0 <= m[f"acc/{name}"] <= 1.0
    assert "acc/no_text" not in m  # the ablations are compared in their own stage
    for chooser in ("rovrm", "visual_only", "random", "oracle"):
        assert 0.0 <= m[f"bon/{chooser}/n2/hallucination_rate"] <= 1.0
    # n = 1 has one candidate: every chooser picks it
    assert len({m[f"bon/{c}/n1/hallucination_rate"] for c in ("rovrm", "visual_only", "random", "oracle")}) == 1
    assert m["bon/oracle/n2/hallucination_rate"] <= m["bon/random/n2/hallucination_rate"]
    assert isinstance(m["claims/rovrm_more_accurate_than_visual_only"], bool)
    with open(project / "models/rovrm_compare/plots/best_of_n.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4 * 2


def test_selection_sizes_beyond_the_pool_fail_naming_the_key(project):
    params = copy.deepcopy(PARAMS)
    params["visual"]["select"]["k_text"] = 10_000
    before = (project / "data/visual_select/selections.json").read_bytes()
    with pytest.raises(ParamsError, match="visual.select.k_text"):
        _run(project, "visual_select", visual_select.run, params)
    assert (project / "data/visual_select/selections.json").read_bytes() == before


def test_real_visual_pairs_replace_the_generated_ones(tmp_path):
    write_jsonl_atomic(_text_world(12), tmp_path / "data/prefs/train.jsonl")
    real = tmp_path / "real"
    img = np.zeros((30, 30, 3), dtype=np.uint8)
    img[5:20, 5:20, 0] = 255
    save_png(img, real / "imgs/a.png")
    rows = [{"image": "imgs/a.png", "question": "What colour is the square?", "chosen": "The square is red.",
             "rejected": "The square is blue."}] * 3
    write_jsonl_atomic(rows, real / "pool.jsonl")
    params = copy.deepcopy(PARAMS)
    params["visual"]["real"] = {"pool": str(real / "pool.jsonl"), "test": None, "image_root": None}
    _run(tmp_path, "visual_world", visual_world.run, params)
    pool = [json.loads(line) for line in open(tmp_path / "data/visual/visual_pool.jsonl")]
    assert len(pool) == 3 and pool[0]["image"] == str((real / "imgs/a.png").resolve())
    assert _metrics(tmp_path / "data/visual/metrics.json")["real_pairs"]["pool"]["pairs"] == 3

    # real test pairs too: no gold, so reward models are scored (and gated) on their labels
    write_jsonl_atomic(rows, real / "leaky.jsonl")
    params["visual"]["real"]["test"] = str(real / "leaky.jsonl")
    with pytest.raises(ParamsError, match="share image and prompt"):
        _run(tmp_path, "visual_world", visual_world.run, params)
    write_jsonl_atomic([{**rows[0], "question": "<image>\nWhich colour is the square?"}] * 6, real / "test.jsonl")
    params["visual"]["real"]["test"] = str(real / "test.jsonl")
    _run(tmp_path, "visual_world", visual_world.run, params)
    _run(tmp_path, "visual_policy", visual_policy.run, params)
    _run(tmp_path, "visual_select", visual_select.run, {**params, "visual": {**params["visual"], "select": {
        **params["visual"]["select"], "n_visual": 3}}})
    _run(tmp_path, "rovrm@rovrm_visual_only", rovrm.run, params)
    test = [json.loads(line) for line in open(tmp_path / "data/visual/visual_test.jsonl")]
    assert test[0]["prompt"] == "Which colour is the square?"  # the LLaVA placeholder is stripped
    m = _metrics(tmp_path / "models/rovrm_visual_only/metrics.json")
    assert m["gate"]["metric"] == "test_visual/acc_label" and "test_visual/acc_gold" not in m

    params["visual"]["real"]["pool"] = str(real / "missing.jsonl")
    with pytest.raises(ParamsError, match="visual.real.pool"):
        _run(tmp_path, "visual_world", visual_world.run, params)
    write_jsonl_atomic([{**rows[0], "image": "imgs/none.png"}], real / "bad.jsonl")
    params["visual"]["real"]["pool"] = str(real / "bad.jsonl")
    with pytest.raises((ValueError, FileNotFoundError), match="bad.jsonl"):
        _run(tmp_path, "visual_world", visual_world.run, params)
    assert len(open(tmp_path / "data/visual/visual_pool.jsonl").readlines()) == 3  # the last good output stays


def test_phase_length_is_max_steps_and_an_epochs_block_fails_naming_it(project):
    """Fails if a phase's `train` block were patched after it is built (steps from data size) or an old
    `epochs` key were silently accepted instead of failing with the params key, leaving the model as it was."""
    m = _metrics(project / "models/rovrm/metrics.json")
    assert (m["text/steps"], m["caption/steps"], m["visual/steps"]) == (1, 2, 2) and m["train_steps"] == 5
    params = copy.deepcopy(PARAMS)
    params["visual"]["rm"]["phases"]["text"]["train"]["epochs"] = 2
    before = (project / "models/rovrm/metrics.json").read_bytes()
    with pytest.raises(ValueError, match=r"visual\.rm\.phases\.text\.train.*epochs"):
        _run(project, "rovrm@rovrm", rovrm.run, params)
    assert (project / "models/rovrm/metrics.json").read_bytes() == before


def _policy_params(**select):
    params = copy.deepcopy(PARAMS)
    params["visual"]["select"].update({"visual_pairs": "policy", **select})
    return params


def test_policy_pairs_from_a_junk_policy_fail_naming_the_key(project):
    """The tiny policy answers in text the oracle cannot parse: every answer grades 0, so no pair can be ranked."""
    before = (project / "data/visual_select/visual_train.jsonl").read_bytes()
    with pytest.raises(ParamsError, match="visual.select.visual_pairs: policy: .* 0 training and 0 held-out"):
        _run(project, "visual_select", visual_select.run, _policy_params())
    assert (project / "data/visual_select/visual_train.jsonl").read_bytes() == before


def test_policy_pairs_rank_the_policys_answers_by_the_oracle(project, monkeypatch):
    """A scripted policy (half its answers correct, half with one error) stands in for a trained one: pairs
    are the policy's own answers, the preferred one grades higher unless the labeler flipped, and the held-out
    pairs do not depend on visual_seed (every seed of a study scores the same pairs)."""
    from pipelines.visual import best_of_n
    from pipelines.visual.generator import forced_response
    from pipelines.visual.scene import Scene

    def scripted(vlm, layout, prompts, images, n, max_new_tokens, temperature, seed, greedy=False):
        rng = np.random.default_rng(seed)
        return [[forced_response(Scene.from_dict(r["spec"]["scene"]), r["spec"]["prompt"], rng,
                                 "correct" if k % 2 == 0 else "absent_object")[0] for k in range(n)] for r in prompts]

    monkeypatch.setattr(best_of_n, "sample_responses", scripted)
    outputs = {}
    for seed in (0, 1):
        params = _policy_params()
        params["visual_seed"] = seed
        _run(project, "visual_select", visual_select.run, params)
        outputs[seed] = [[json.loads(line) for line in open(project / f"data/visual_select/{name}.jsonl")]
                         for name in ("visual_train", "visual_test")]
    train, test = outputs[0]
    assert 12 < len(train) <= 12 * 2 and 0 < len(test) <= 16  # up to per_prompt pairs per image; one held out
    for pair in train + test:
        assert pair["spec"]["source"] == "policy" and pair["image"].startswith("images/")
        assert (pair["gold_chosen"] > pair["gold_rejected"]) == pair["label_agrees_with_gold"]
    assert outputs[1][1] == test and outputs[1][0] != train
    m = _metrics(project / "data/visual_select/metrics.json")
    assert m["visual_pairs"] == "policy" and m["visual_train_pairs"] == len(outputs[1][0])
    _run(project, "visual_select", visual_select.run)  # back to the module's pool pairs for the other tests


def test_reward_model_reports_the_image_blanked_control(project):
    m = _metrics(project / "models/rovrm/metrics.json")
    assert 0.0 <= m["blank/test_visual/acc_gold"] <= 1.0
    assert m["image_minus_blank_ci95_low"] <= m["image_minus_blank"] <= m["image_minus_blank_ci95_high"]
    assert (project / "models/rovrm/plots/pairs_blank.csv").is_file()
