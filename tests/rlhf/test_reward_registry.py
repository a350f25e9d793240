"""The reward-model registry, and the promise it makes: a new reward model is one module, one
`register` call and one profile entry; the best-of-n and comparison stages then include it."""
from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from alignflow.runtime.params import render_profile
from alignflow.runtime.stage import StageContext, StagePaths, parse_stage_args
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.data.world import gold_reward, make_task
from pipelines.models.causal_lm import save_causal_lm
from pipelines.models.reward import registry
from pipelines.models.reward.bt import BTRewardModel
from stages import best_of_n, rm_compare
from stages.policy_common import POLICY_INPUTS, policy_options
from tests.project import REPO
from tests.rlhf import toy_reward


@pytest.fixture
def toy():
    registry.register(toy_reward.ENTRY)
    yield toy_reward.ENTRY
    registry.unregister("toy")


def test_unknown_name_lists_the_known_ones():
    """Fails if a typo in a profile's reward-model list gave a bare KeyError without the choices."""
    with pytest.raises(KeyError, match=r"unknown reward model 'grma'; known: .*bt.*gram"):
        registry.get("grma")


def test_a_taken_name_cannot_be_reregistered_differently(toy):
    """Fails if registering a second model under a taken name silently replaced the first."""
    registry.register(toy)  # the same entry again is harmless
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy_reward.RewardModelEntry(name="toy", modality="text", load=toy.load, description="x"))


def test_load_many_names_the_missing_folder():
    """Fails if a profile naming a model dvc.yaml gives no folder for were not a clear bad-input error."""
    with pytest.raises(ValueError, match="gram named but no model folder"):
        registry.load_many({}, ["gram"])


def test_bt_entry_scores_and_picks_like_the_model(tmp_path, policy_lm, tokenizer, prompts):
    """Fails if the BT entry's scorer drifted from the model's own rewards and argmax pick."""
    model = BTRewardModel(policy_lm, tokenizer, 64, seed=0)
    model.save(str(tmp_path / "bt"))
    scorer = registry.load("bt", tmp_path / "bt", batch_size=2)
    responses = ["yes", "a much longer answer here", "no", "maybe so"]
    assert torch.allclose(scorer.score(prompts, responses), model.eval().rewards(prompts, responses))
    cands = [responses, responses[::-1]]
    assert scorer.choose_best(prompts[:2], cands) == model.best_of_n_argmax_many(prompts[:2], cands)


# ---- a toy reward model flows through best_of_n and rm_compare ---------------------------------------

def _pool(n_prompts: int = 3, k: int = 4) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n_prompts):
        task = make_task("arithmetic", rng)
        samples = [task.reference, *task.variants["wrong_answer"], "no idea", f"well, {task.reference} I think so"][:k]
        rows.append({"id": f"p{i}", "family": task.family, "prompt": task.prompt, "spec": task.spec,
                     "samples": samples, "gold": [gold_reward(task.spec, s) for s in samples]})
    return rows


def _run(root, name, module_run, params, inputs, configure, argv):
    """One stage function in-process, given its command line as dvc.yaml would (outputs commit on success)."""
    paths = StagePaths(inputs, ("out",))
    name, args = parse_stage_args(name, argv, paths, configure)
    paths.take(args, root, name)
    ctx = StageContext(name, root, params, None, args=args, paths=paths)
    module_run(ctx)
    ctx._commit_outputs()


@pytest.fixture
def project(tmp_path, policy_lm, tokenizer):
    save_causal_lm(policy_lm, tokenizer, str(tmp_path / "models/sft/model"))
    BTRewardModel(policy_lm, tokenizer, 64, seed=0).save(str(tmp_path / "models/bt/model"))
    toy_reward.save(tmp_path / "models/toy/model", weight=1.0)
    write_jsonl_atomic(_pool(), tmp_path / "data/sft_samples/samples.jsonl")
    return tmp_path


def test_a_registered_toy_model_joins_best_of_n_and_the_comparison(toy, project):
    """Fails if best_of_n or rm_compare still hard-coded their reward models (the toy would be missing), or if
    rm_compare chose again instead of reading best_of_n's picks (its toy curve would not be the longest samples')."""
    params = render_profile(REPO, "smoke")
    params["best_of_n"]["reward_models"] = ["bt", "toy"]   # the profile entry
    params["rlhf"]["reward_models"] = ["bt", "toy"]
    params["rm_compare"]["models"] = []
    models = ["--reward-models", "bt=models/bt/model", "toy=models/toy/model"]
    _run(project, "best_of_n", best_of_n.run, params, POLICY_INPUTS, policy_options,
         ["--sft", "models/sft/model", "--pool", "data/sft_samples/samples.jsonl", *models,
          "--out", "models/best_of_n"])
    bon = json.loads((project / "models/best_of_n/metrics.json").read_text())
    assert {"toy/n4/gold", "bt/n4/gold", "toy/n4/proxy/bt", "bt/n4/proxy/toy"} <= set(bon)
    picks = read_jsonl(project / "models/best_of_n/picks.jsonl")
    assert {r["reward_model"] for r in picks} == {"bt", "toy"}

    _run(project, "rm_compare", rm_compare.run, params, rm_compare.INPUTS, rm_compare.options,
         ["--pool", "data/sft_samples/samples.jsonl", "--picks", "models/best_of_n/picks.jsonl", *models,
          "--out", "models/rm_compare"])
    compare = json.loads((project / "models/rm_compare/metrics.json").read_text())
    pool = _pool()
    longest = [max(range(4), key=lambda i: (len(r["samples"][i].split()), -i)) for r in pool]
    expected = sum(r["gold"][j] for r, j in zip(pool, longest)) / len(pool)
    assert compare["best_of_n/toy/n4"] == pytest.approx(round(expected, 4))
    assert compare["best_of_n/toy/n4"] == pytest.approx(bon["toy/n4/gold"], abs=1e-4)
    assert "best_of_n/bt/n4" in compare
    with open(project / "models/rm_compare/plots/best_of_n.csv") as fh:
        assert csv.DictReader(fh).fieldnames == ["n", "bt", "toy", "oracle", "single_sample", "kl_bound"]


def test_named_model_folders_are_checked(tmp_path):
    """Fails if a malformed `--reward-models` pair or a missing folder got past the stage's start."""
    from stages.reward_common import named_paths

    (tmp_path / "models/bt").mkdir(parents=True)
    paths = StagePaths((), ())
    _, args = parse_stage_args("best_of_n", ["--reward-models", "bt=models/bt"], paths, policy_options)
    ctx = StageContext("best_of_n", tmp_path, {}, None, args=args, paths=paths)
    assert named_paths(ctx, "reward-models") == {"bt": (tmp_path / "models/bt").resolve()}
    ctx.args.reward_models = ["models/bt"]
    with pytest.raises(ValueError, match="expects NAME=PATH"):
        named_paths(ctx, "reward-models")
    ctx.args.reward_models = ["gram=models/gram"]
    with pytest.raises(FileNotFoundError, match="gram=models/gram does not exist"):
        named_paths(ctx, "reward-models")


def test_picks_must_cover_the_pool():
    """Fails if rm_compare could silently draw a curve from picks made on another pool."""
    from pipelines.rlhf.best_of_n import picks_by_chooser

    picks = [{"reward_model": "toy", "n": 2, "id": "a", "pick": 1}, {"reward_model": "toy", "n": 2, "id": "b", "pick": 0}]
    assert picks_by_chooser(picks, ["b", "a"]) == {"toy": {2: [0, 1]}}
    with pytest.raises(ValueError, match="lack pool prompt 'c'"):
        picks_by_chooser(picks, ["a", "c"])
