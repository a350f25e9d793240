"""The three LRHP stages on a tiny workspace (world splits, 2-layer base LM, untrained BT and GRAM)."""
import json

import pytest

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.params import render_profile
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.data.world import build_world
from pipelines.lrhp.vectors import vector_count
from pipelines.models.causal_lm import build_llama, save_causal_lm
from pipelines.models.preference import PairEncoder
from pipelines.models.reward.bt import BTRewardModel
from pipelines.models.reward.gram import GenerativeRewardModel
from pipelines.models.tokenizer import train_bpe_tokenizer
from tests.project import REPO, run_stage

# A tiny workspace and 17 tiny reward models: ~40 s on 2 busy cores, so it runs in `make test-full`.
pytestmark = pytest.mark.slow

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 128, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrhp_ws")
    params = render_profile(REPO, "smoke")
    world = build_world({**params["world"], "n_train_labeled": 120, "n_test_id": 120, "n_unlabeled": 10,
                         "n_corpus_train": 200, "n_sft_train": 10, "n_sft_val": 10, "n_eval_prompts": 5,
                         "n_corpus_val": 10, "n_test_ood": 10, "n_adapt_train": 4, "n_adapt_test": 4}, seed=0)
    write_jsonl_atomic(world["prefs_train"], root / "data/prefs/train.jsonl")
    write_jsonl_atomic(world["prefs_test_id"], root / "data/world/prefs_test_id.jsonl")
    tok = train_bpe_tokenizer([r["text"] for r in world["corpus_train"]], vocab_size=300, min_frequency=2,
                              model_max_length=128)
    save_causal_lm(build_llama(TINY, tok, seed=0), tok, str(root / "models/base_lm/model"))
    BTRewardModel(build_llama(TINY, tok, seed=1), tok, 64, seed=0).save(str(root / "models/bt_rm/model"))
    GenerativeRewardModel(build_llama(TINY, tok, seed=2), tok, 128).save(str(root / "models/gram/model"))
    params["lrhp"].update({"dim": 4, "max_length": 80})
    params["lrhp"]["train"].update({"max_steps": 2, "batch_size": 4})
    params["lrhp"]["eval"].update({"n_pairs": 120, "n_scored": 60, "bootstrap": 20})
    params["lrhp_select"].update({"n_target": 4, "ks": [8, 16], "methods": ["lrhp", "lrhp_ot", "prompt_emb", "rm_gap",
                                                                             "random", "all"], "bootstrap": 20})
    params["lrhp_select"]["train"].update({"max_steps": 1, "batch_size": 2})
    params["lrhp_margin"].update({"n_fit": 30, "n_test": 40, "bootstrap": 20})
    params["lrhp_margin"]["margin_bt"].update({"n_train": 20})
    params["lrhp_margin"]["margin_bt"]["train"].update({"max_steps": 1, "batch_size": 2})
    from stages import lrhp
    run_stage(root, "lrhp", lrhp.run, params)
    return root, params


def test_lrhp_stage_writes_encoder_vectors_map_and_gate(workspace):
    """Fails if the lrhp stage loses its model, vectors, map or gate, or if the saved encoder does not reload."""
    root, _ = workspace
    out = root / "models/lrhp"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gate"]["metric"] == "test_id/pref_acc_gold" and "passed" in metrics["gate"]
    assert 0.0 <= metrics["test_id/pref_acc_gold"] <= 1.0 and metrics["test_id/n"] == 60
    assert (out / "plots/map.png").is_file() and (out / "plots/map.csv").read_text().count("\n") == 61
    assert vector_count(out, "test") == 120 and vector_count(out, "pool") == 120
    enc = PairEncoder.load(out / "model")
    assert enc.dim == 4


def test_lrhp_select_scores_every_method_at_every_k(workspace):
    """Fails if a method/target/K cell is missing from the metrics, or a selection is not exactly K pairs
    (target_share is a share of K picks, so a wrong count shows as an impossible fraction)."""
    root, params = workspace
    from stages import lrhp_select
    run_stage(root, "lrhp_select", lrhp_select.run, params)
    m = json.loads((root / "models/lrhp_select/metrics.json").read_text())
    for target in ("safety", "arithmetic"):
        for method in ("lrhp", "lrhp_ot", "prompt_emb", "rm_gap", "random"):
            for k in (8, 16):
                share = m[f"{target}/{method}/k{k}/target_share"]
                assert 0.0 <= m[f"{target}/{method}/k{k}/acc_gold"] <= 1.0
                assert abs(share * k - round(share * k)) < 1e-3
        assert f"{target}/all/acc_gold" in m and f"{target}/lrhp_minus_random/k8" in m
    assert m["n_models"] == 1 + 2 * 2 + 3 * 2 * 2
    assert (root / "models/lrhp_select/plots/selection_curves.png").is_file()


def test_lrhp_margin_scores_head_and_every_baseline(workspace):
    """Fails if a margin predictor or the margin-aware vs plain BT comparison is missing."""
    root, params = workspace
    from stages import lrhp_margin
    run_stage(root, "lrhp_margin", lrhp_margin.run, params)
    m = json.loads((root / "models/lrhp_margin/metrics.json").read_text())
    for name in ("lrhp", "bt_gap", "gram_log_odds", "length_ratio", "constant"):
        assert -1.0 <= m[f"margin/{name}/spearman"] <= 1.0 and m[f"margin/{name}/mae"] >= 0
    assert m["margin/constant/spearman"] == 0.0
    assert "margin_bt/margin_minus_plain" in m and m["margin/n_test"] == 40
    # every training pair's out-of-fold margin, in pool order, for the margin-weighted DPO stage
    pool = [json.loads(line) for line in (root / "data/prefs/train.jsonl").read_text().splitlines()]
    margins = [json.loads(line) for line in (root / "models/lrhp_margin/margins.jsonl").read_text().splitlines()]
    assert [r["id"] for r in margins] == [str(r.get("id", i)) for i, r in enumerate(pool)]
    assert all(isinstance(r["predicted_margin"], float) for r in margins)


def test_bad_pool_line_and_bad_target_fail_clearly(workspace, tmp_path):
    """Fails if a broken pool record is not named by file and line, or a target with too few pairs by its key."""
    root, params = workspace
    from stages import lrhp_select
    pool = root / "data/prefs/train.jsonl"
    good = pool.read_text()
    lines = good.splitlines()
    rec = json.loads(lines[2])
    del rec["chosen"]
    try:
        pool.write_text("\n".join(lines[:2] + [json.dumps(rec)] + lines[3:]) + "\n")
        with pytest.raises(ValueError, match=r"train\.jsonl: line 3: field 'chosen'"):
            run_stage(root, "lrhp_select", lrhp_select.run, params)
    finally:
        pool.write_text(good)
    bad = json.loads(json.dumps(params))
    bad["lrhp_select"]["targets"] = [{"name": "tiny", "families": ["no_such_family"]}]
    with pytest.raises(ParamsError, match=r"lrhp_select\.targets\[0\]"):
        run_stage(root, "lrhp_select", lrhp_select.run, bad)
