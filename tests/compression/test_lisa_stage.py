"""Stage `lisa` on a temp project root: a tiny SFT policy, tiny SFT data, a ppo_gram whose gate failed."""
from __future__ import annotations

import json

import pytest
import torch

import pipelines.compression.recipe as lisa_recipe
import stages.lisa as lisa_stage
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, StagePaths, parse_stage_args
from pipelines.compression.io import load_lisa_model
from pipelines.compression.objective import forward, make_batches
from pipelines.models.causal_lm import build_llama, save_causal_lm
from pipelines.models.tokenizer import load_tokenizer, train_bpe_tokenizer

PROMPTS = ["Add 2 and 3.", "Reverse the list 1, 2, 3.", "Reply with JSON holding 4.", "Say hello politely."]
RESPONSES = ["5", "3, 2, 1", '{"answer": 4}', "Hello, nice to meet you."]

PARAMS = {
    "threads": 1, "max_length": 32, "n_train": 24, "n_val": 8, "eval_batch_size": 8,
    "analysis": {"n_seqs": 4, "metric": "cosine"},
    "budget": 10.0, "rank": None, "mode": "full", "align_heads": True,
    "train": {"max_steps": 2, "batch_size": 4, "lr": 0.001, "lm_weight": 0.0, "distill_weight": 1.0},
    "throughput": {"seq_lens": [8], "decode_tokens": 2, "batch_size": 1, "warmup": 0, "repeats": 1, "threads": 1},
}


# the command line dvc.yaml gives the stage
ARGV = ["--sft", "models/sft/model", "--ppo", "models/ppo_gram", "--train", "data/world/sft_train.jsonl",
        "--val", "data/world/sft_val.jsonl", "--out", "models/lisa"]


def _rows(n: int, offset: int) -> list[dict]:
    return [{"prompt": f"{PROMPTS[(i + offset) % 4]} ({i})", "response": RESPONSES[(i + offset) % 4]}
            for i in range(n)]


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("lisa_sft") / "model"
    texts = [f"User: {r['prompt']}\nAssistant: {r['response']}" for r in _rows(32, 0)]
    tok = train_bpe_tokenizer(texts, vocab_size=300, min_frequency=1)
    cfg = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
               intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
    save_causal_lm(build_llama(cfg, tok, seed=0), tok, str(path))
    return path


@pytest.fixture
def root(tmp_path, sft_folder):
    import shutil

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    shutil.copytree(sft_folder, tmp_path / "models/sft/model")
    data = tmp_path / "data/world"
    data.mkdir(parents=True)
    for name, rows in (("sft_train.jsonl", _rows(24, 0)), ("sft_val.jsonl", _rows(8, 1))):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "models/ppo_gram").mkdir()
    gate = {"gate": {"passed": False, "reason": "no gain"}}
    (tmp_path / "models/ppo_gram/metrics.json").write_text(json.dumps(gate))
    return tmp_path


def _run(root, monkeypatch, **changes) -> tuple[dict, list]:
    """Run the stage like stage_main would (no MLflow run); returns (metrics, models handed to save_lisa_model)."""
    monkeypatch.setenv("ALIGNFLOW_TRACKING", "off")
    saved = []
    real_save = lisa_recipe.save_lisa_model

    def spy(model, path):
        saved.append(model)
        return real_save(model, path)

    monkeypatch.setattr(lisa_recipe, "save_lisa_model", spy)
    paths = StagePaths(("sft", "ppo", "train", "val"), ("out",))
    name, args = parse_stage_args("lisa", ARGV, paths)
    paths.take(args, root, name)
    ctx = StageContext(name, root, {"lisa_seed": 0, "profile": "unit", "lisa": {**PARAMS, **changes}}, None,
                       args=args, paths=paths)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        lisa_stage.run(ctx)
        ctx._commit_outputs()
    finally:  # the stage sets both for its own process
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    facts = json.loads((root / "reports/machine/lisa/facts.json").read_text())
    return {**json.loads((root / "models/lisa/metrics.json").read_text()), "facts": facts}, saved


def _same_logits(a, b) -> bool:
    ids, mask = make_batches([[1, 40, 41, 42, 2], [1, 50, 51, 2]], 2, 0)[0]
    with torch.no_grad():
        return torch.equal(forward(a, ids, mask).logits, forward(b, ids, mask).logits)


def test_stage_compresses_the_sft_policy_when_ppo_gate_failed(root, monkeypatch):
    metrics, saved = _run(root, monkeypatch)
    assert metrics["source"] == "sft" and "gate not passed" in metrics["source_reason"]
    assert metrics["layers_replaced"] == [1, 2]
    assert metrics["fraction_layers_replaced"] == pytest.approx(2 / 3, abs=1e-4)
    for key in ("qk_compression_ratio", "qk_flop_ratio", "lisa_trainable_fraction", "base_val_ppl", "lisa_val_ppl",
                "ppl_increase", "similarity/same_index_mean", "similarity/matched_mean", "sensitivity/L1",
                "sensitivity/L2"):
        assert isinstance(metrics[key], float), key
    for key in ("throughput/seq8/prefill_ratio", "throughput/seq8/decode_ratio",
                "throughput/seq8/prefill_ratio_vs_eager", "throughput/seq8/decode_ratio_vs_eager"):
        assert isinstance(metrics["facts"][key], float), key  # machine facts: outside the tracked output
    assert not any(k.startswith(("throughput/", "seconds")) for k in metrics)
    for mode in ("share", "align", "lowrank", "full"):
        assert metrics[f"ablation/{mode}/val_ppl"] > 1.0
    assert metrics["ablation/layers"] == [1, 2] and metrics["ablation/on_deepest_only"] is False
    assert metrics["roundtrip_identical"] is True and metrics["saved_fallback"] is False
    gate = metrics["gate"]
    assert gate["passed"] is True and gate["metric"] == "fraction_layers_replaced" and gate["higher_is_better"] is True
    out = root / "models/lisa"
    assert {"similarity_grid.png", "sensitivity.png", "selection.csv", "ablation.csv"} <= \
        {p.name for p in (out / "plots").iterdir()}
    assert (root / "reports/machine/lisa/throughput.csv").is_file()
    assert (out / "plots/selection.csv").read_text().splitlines()[0] == "layer,ppl,threshold,ppl_increase,accepted"
    reloaded = load_lisa_model(out / "model")
    assert reloaded.lisa_state.layers == [1, 2] and _same_logits(saved[0], reloaded)
    assert load_tokenizer(str(out / "model")).bos_token_id == 1
    again, _ = _run(root, monkeypatch)  # same seed, same numbers (timings live in "facts")
    assert {k: v for k, v in again.items() if k != "facts"} == {k: v for k, v in metrics.items() if k != "facts"}


def test_stage_saves_the_deepest_layer_when_nothing_fits_and_fails_its_gate(root, monkeypatch):
    real = lisa_recipe.select_layers
    monkeypatch.setattr(lisa_recipe, "select_layers", lambda *a, **k: real(*a, **{**k, "budget": -1.0}))  # unreachable
    metrics, saved = _run(root, monkeypatch)
    assert metrics["layers_replaced"] == [] and metrics["fraction_layers_replaced"] == 0.0
    assert metrics["saved_fallback"] is True and metrics["saved_layers"] == [2]
    assert metrics["ablation/layers"] == [2] and metrics["ablation/on_deepest_only"] is True
    assert metrics["gate"]["passed"] is False and "no layer within the budget" in metrics["gate"]["reason"]
    assert _same_logits(saved[0], load_lisa_model(root / "models/lisa/model"))


def test_policy_choice(tmp_path):
    ppo, sft = tmp_path / "models/ppo_gram", tmp_path / "models/sft/model"
    assert lisa_stage.choose_policy(ppo, sft) == (
        "sft", sft, "ppo_gram/metrics.json not found; using the SFT policy")  # no ppo_gram metrics at all
    (ppo / "model").mkdir(parents=True)
    (ppo / "metrics.json").write_text(json.dumps({"gate": {"passed": True}}))
    source, path, _ = lisa_stage.choose_policy(ppo, sft)
    assert source == "ppo_gram" and path == ppo / "model"


def test_bad_params_are_params_errors():
    with pytest.raises(ParamsError, match="unknown keys"):
        lisa_stage._settings({**PARAMS, "typo": 1}, 0)
    with pytest.raises(ParamsError, match="lisa.budget"):
        lisa_stage._settings({**PARAMS, "budget": -0.1}, 0)
    with pytest.raises(ParamsError, match="lisa.mode"):
        lisa_stage._settings({**PARAMS, "mode": "nope"}, 0)


def test_train_block_is_one_config_built_once():
    """`lisa.train` becomes a LisaTrainConfig in one place, length named max_steps: the old name `steps`, an
    unknown key, or both loss weights 0 fail naming lisa.train (accepting `steps` again would fail here)."""
    _, cfg = lisa_stage._settings(PARAMS, 7)
    assert (cfg.max_steps, cfg.batch_size, cfg.seed, cfg.distill_weight) == (2, 4, 7, 1.0)
    renamed = {k: v for k, v in PARAMS["train"].items() if k != "max_steps"}
    with pytest.raises(ParamsError, match=r"lisa.train.*unknown keys \['steps'\]"):
        lisa_stage._settings({**PARAMS, "train": {**renamed, "steps": 2}}, 0)
    with pytest.raises(ParamsError, match="lisa.train.*both be 0"):
        lisa_stage._settings({**PARAMS, "train": {**PARAMS["train"], "distill_weight": 0.0}}, 0)
