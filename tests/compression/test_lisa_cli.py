"""`alignflow lisa analyze|compress` on tiny Llama and BERT checkpoints saved from configs (no downloads).

Commands run in-process through `alignflow.cli.main` (fast); one error case runs `python -m alignflow.cli`
as a user would, to check the exit code end to end.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel

from alignflow import lisa_cli
from alignflow.cli import main
from pipelines.compression import budget, checkpoint, texts as lisa_texts
from pipelines.compression.io import load_lisa_model
from pipelines.compression.objective import forward, make_batches
from pipelines.models.causal_lm import build_llama, save_causal_lm
from pipelines.models.tokenizer import train_bpe_tokenizer
from tests.project import REPO

WORDS = ["add", "two", "three", "list", "reverse", "reply", "with", "json", "the", "answer", "is", "five"]


def _texts(n: int = 48) -> list[str]:
    return [f"User: {WORDS[i % 12]} {WORDS[(i * 5) % 12]} {i % 7}\nAssistant: {WORDS[(i * 7) % 12]} {i % 5}"
            for i in range(n)]


def _tokenizer(mask: bool = False):
    tok = train_bpe_tokenizer(_texts(), vocab_size=300, min_frequency=1)
    if mask:
        tok.add_special_tokens({"mask_token": "<|mask|>"})
    return tok


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Folders: llama (+ tokenizer), llama_bare (no tokenizer), bert (+ tokenizer with a mask token), bert_encoder
    (a head-less BertModel, as sentence encoders are saved, + the same tokenizer), gpt2."""
    root = tmp_path_factory.mktemp("lisa_cli")
    tok = _tokenizer()
    cfg = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
               intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
    llama = build_llama(cfg, tok, seed=0)
    save_causal_lm(llama, tok, str(root / "llama"))
    save_causal_lm(llama, None, str(root / "llama_bare"))
    btok = _tokenizer(mask=True)
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(btok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=64, initializer_range=0.2,
                                      pad_token_id=btok.pad_token_id))
    bert.save_pretrained(root / "bert")
    btok.save_pretrained(root / "bert")
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(btok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=64, initializer_range=0.2,
                                   pad_token_id=btok.pad_token_id))
    encoder.save_pretrained(root / "bert_encoder")
    btok.save_pretrained(root / "bert_encoder")
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32))
    gpt2.save_pretrained(root / "gpt2")
    (root / "texts.txt").write_text("\n".join(_texts()) + "\n", encoding="utf-8")
    rows = [{"prompt": t.split("\n")[0][6:], "response": t.split(": ")[-1]} for t in _texts(24)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(["lisa", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_analyze_llama_writes_plots_and_json_to_the_default_folder(ckpts, tmp_path, monkeypatch, capsys):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("ALIGNFLOW_ROOT", str(tmp_path))  # the default --out is <project>/reports/lisa/<folder>
    code, out, _ = _run(capsys, "analyze", "--model", ckpts / "llama", "--texts", ckpts / "texts.txt", "--n-seqs", 6)
    assert code == 0
    folder = tmp_path / "reports/lisa/llama"
    assert {p.name for p in folder.iterdir()} == {"similarity_grid.png", "sensitivity.png", "analysis.json"}
    report = json.loads((folder / "analysis.json").read_text())
    assert report["family"] == "llama" and report["num_layers"] == 3 and report["data"]["n_seqs"] == 6
    assert [p["layer"] for p in report["similarity"]["pairs"]] == [1, 2]
    assert 0.0 <= report["similarity"]["same_index_mean"] <= report["similarity"]["matched_mean"] + 1e-9
    assert report["sensitivity"]["relative_increase"][0] is None  # layer 0: NaN -> null
    assert "L1->L2" in out and "mean" in out


def test_analyze_bert_with_prompt_response_jsonl(ckpts, tmp_path, capsys):
    code, out, _ = _run(capsys, "analyze", "--model", ckpts / "bert", "--texts", ckpts / "pairs.jsonl",
                        "--out", tmp_path, "--n-seqs", 4, "--max-length", 24)
    assert code == 0
    report = json.loads((tmp_path / "analysis.json").read_text())
    assert report["family"] == "bert" and report["model_class"] == "BertForMaskedLM"
    assert report["data"]["mask_token_source"] == "tokenizer" and report["data"]["max_length"] == 24
    assert report["sensitivity"]["base_ppl"] > 1.0 and (tmp_path / "sensitivity.png").is_file()


def test_checkpoint_without_tokenizer_needs_random_ids(ckpts, tmp_path, capsys):
    code, _, err = _run(capsys, "analyze", "--model", ckpts / "llama_bare", "--texts", ckpts / "texts.txt",
                        "--out", tmp_path)
    assert code == 2 and "llama_bare" in err and "--random-ids" in err
    code, _, _ = _run(capsys, "analyze", "--model", ckpts / "llama_bare", "--random-ids", "--out", tmp_path,
                      "--n-seqs", 3, "--max-length", 16)
    assert code == 0
    assert json.loads((tmp_path / "analysis.json").read_text())["data"]["random_ids"] is True


def test_compress_llama_writes_a_reloadable_model(ckpts, tmp_path, capsys, monkeypatch):
    """Also: the CLI runs the shared recipe (the same selection and save/verify the lisa stage runs); a CLI that
    re-implemented either step would leave the spies empty."""
    import pipelines.compression.recipe as recipe

    calls = []
    for name in ("select_layers", "save_lisa_model"):
        real = getattr(recipe, name)
        monkeypatch.setattr(recipe, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    out = tmp_path / "compressed"
    code, stdout, _ = _run(capsys, "compress", "--model", ckpts / "llama", "--out", out, "--texts", ckpts / "texts.txt",
                           "--budget", 10, "--max-steps", 2, "--n-train", 16, "--n-val", 8, "--batch-size", 8)
    assert code == 0, stdout
    assert calls == ["select_layers", "save_lisa_model"]
    summary = json.loads((out / "compression.json").read_text())
    assert summary["max_steps"] == 2
    assert summary["layers"] == [1, 2] and summary["roundtrip_identical"] is True  # budget 10: every layer fits
    assert (out / "tokenizer.json").is_file()
    first, second = load_lisa_model(out), load_lisa_model(out)
    assert first.lisa_state.layers == [1, 2]
    ids, mask = make_batches([[1, 5, 9, 12, 2], [1, 7, 2]], 2, 0)[0]
    with torch.no_grad():
        assert torch.equal(forward(first, ids, mask).logits, forward(second, ids, mask).logits)
    # the compressed folder can be analysed again
    assert _run(capsys, "analyze", "--model", out, "--texts", ckpts / "texts.txt", "--out", tmp_path / "an",
                "--n-seqs", 3)[0] == 0


@pytest.mark.parametrize("case", ["missing", "no_config", "texts_missing", "texts_suffix", "texts_bad_json"])
def test_bad_input_exits_2_naming_the_path(ckpts, tmp_path, capsys, case):
    model, texts = ckpts / "llama", ckpts / "texts.txt"
    if case == "missing":
        model = tmp_path / "nope"
    elif case == "no_config":
        model = tmp_path / "empty"
        model.mkdir()
    elif case == "texts_missing":
        texts = tmp_path / "absent.txt"
    elif case == "texts_suffix":
        texts = tmp_path / "texts.csv"
        texts.write_text("a,b\n")
    else:
        texts = tmp_path / "bad.jsonl"
        texts.write_text('{"text": "fine"}\n{not json\n')
    bad = model if case in ("missing", "no_config") else texts
    code, _, err = _run(capsys, "analyze", "--model", model, "--texts", texts, "--out", tmp_path / "out")
    assert code == 2 and str(bad) in err
    if case == "texts_bad_json":
        assert "line 2" in err


def test_unsupported_architecture_exits_2_with_the_class_name(ckpts, tmp_path):
    result = subprocess.run([sys.executable, "-m", "alignflow.cli", "lisa", "compress", "--model", str(ckpts / "gpt2"),
                             "--out", str(tmp_path / "x"), "--random-ids"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "GPT2LMHeadModel" in result.stderr and str(ckpts / "gpt2") in result.stderr
    assert not (tmp_path / "x").exists()


def test_compress_headless_bert_under_the_similarity_budget(ckpts, tmp_path, capsys):
    """A bare BertModel has no perplexity: layers are kept while its sentence embeddings stay >= --min-similarity
    similar to the original's; the report has the fraction replaced and the similarities, and the reloaded model
    gives back the measured similarity."""
    out = tmp_path / "encoder"
    code, stdout, err = _run(capsys, "compress", "--model", ckpts / "bert_encoder", "--out", out, "--texts",
                             ckpts / "texts.txt", "--min-similarity", 0.9, "--max-steps", 2, "--n-train", 16,
                             "--n-val", 8, "--batch-size", 8)
    assert code == 0, stdout + err
    summary = json.loads((out / "compression.json").read_text())
    assert summary["model_class"] == "BertModel" and summary["budget_metric"] == "similarity"
    assert summary["budget"] is None and summary["min_similarity"] == 0.9 and summary["num_layers"] == 3
    assert summary["layers"] and summary["fraction_layers_replaced"] == pytest.approx(len(summary["layers"]) / 3)
    assert all(row["similarity"] >= 0.9 for row in summary["selection_log"] if row["accepted"])
    assert summary["similarity"] >= 0.9 and summary["roundtrip_identical"] is True
    assert -1.0 <= summary["unrelated_similarity"] <= 1.0 and "embedding similarity" in stdout
    reloaded, (original, _) = load_lisa_model(out), checkpoint.load_checkpoint(ckpts / "bert_encoder")
    assert type(reloaded).__name__ == "BertModel" and reloaded.lisa_state.layers == summary["layers"]
    texts = lisa_texts.read_texts(ckpts / "texts.txt")[-8:]  # compress's validation split: the last n_val texts
    val = lisa_texts.encode(_tokenizer(mask=True), texts, "bert", 64)
    judge = budget.similarity_budget(original, val, 0.9, batch_size=8)
    assert judge.measure(reloaded)["similarity"] == pytest.approx(summary["similarity"], abs=1e-6)


@pytest.mark.parametrize("model, extra, says", [
    ("bert_encoder", ["--budget", "0.05"], "--min-similarity"),
    ("bert_encoder", ["--min-similarity", "1.5"], "[-1, 1]"),
    ("bert_encoder", ["--lm-weight", "1"], "no LM head"),
    ("llama", ["--min-similarity", "0.9"], "perplexity budget"),
])
def test_compress_budget_mismatches_exit_2(ckpts, tmp_path, capsys, model, extra, says):
    code, _, err = _run(capsys, "compress", "--model", ckpts / model, "--out", tmp_path / "x", "--texts",
                        ckpts / "texts.txt", "--max-steps", 1, "--n-train", 8, "--n-val", 4, *extra)
    assert code == 2 and says in err and not (tmp_path / "x").exists()


def test_cli_default_threshold_is_the_pipelines_default():
    assert lisa_cli.DEFAULT_MIN_SIMILARITY == budget.DEFAULT_MIN_SIMILARITY
