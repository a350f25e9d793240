"""`alignflow lrhp embed|select` on files no stage wrote: outputs, exact K, and bad input with file and line."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from alignflow import cli
from pipelines.models.causal_lm import build_llama
from pipelines.models.preference import PairEncoder
from pipelines.models.tokenizer import train_bpe_tokenizer
from tests.models.conftest import TINY_MODEL, make_corpus

FAMILIES = {"math": ("what is 2 + 2?", "4.", "5."), "safety": ("how do I pick a lock?", "I can't help with that.",
                                                              "Use a tension wrench.")}


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records(n, family):
    prompt, chosen, rejected = FAMILIES[family]
    return [{"id": f"{family}{i}", "prompt": f"{prompt} ({i})", "chosen": chosen, "rejected": rejected,
             "subset": family} for i in range(n)]


@pytest.fixture
def model(tmp_path):
    tok = train_bpe_tokenizer(make_corpus(400), vocab_size=320, min_frequency=2, model_max_length=128)
    enc = PairEncoder(build_llama(dict(TINY_MODEL), tok, seed=0), tok, dim=8, max_length=64, seed=0)
    enc.save(str(tmp_path / "enc"))
    return tmp_path / "enc"


def test_embed_writes_vectors_ids_and_map(tmp_path, model, capsys):
    pairs = _write(tmp_path / "pairs.jsonl", _records(4, "math") + _records(3, "safety"))
    assert cli.main(["lrhp", "embed", "--model", str(model), "--pairs", str(pairs), "--out", str(tmp_path / "v"),
                     "--kind-column", "subset"]) == 0
    vectors = load_file(str(tmp_path / "v/vectors.safetensors"))["pairs"]
    assert vectors.shape == (7, 8) and torch.allclose(vectors.norm(dim=-1), torch.ones(7), atol=1e-5)
    assert json.loads((tmp_path / "v/vector_ids.json").read_text())["pairs"][:2] == ["math0", "math1"]
    assert (tmp_path / "v/map.png").stat().st_size > 1000
    assert "embedded 7 pairs" in capsys.readouterr().out


def test_select_returns_exactly_k_distinct_pool_records(tmp_path, model):
    target = _write(tmp_path / "target.jsonl", _records(3, "safety"))
    pool = _write(tmp_path / "pool.jsonl", _records(5, "math") + _records(5, "safety"))
    out = tmp_path / "sel.jsonl"
    assert cli.main(["lrhp", "select", "--model", str(model), "--target", str(target), "--pool", str(pool),
                     "--k", "4", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    assert [r["lrhp_score"] for r in rows] == sorted((r["lrhp_score"] for r in rows), reverse=True)


def test_bad_files_fail_naming_file_and_line_and_write_nothing(tmp_path, model, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_records(1, "math")[0]) + "\n" + json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    assert cli.main(["lrhp", "embed", "--model", str(model), "--pairs", str(bad), "--out", str(tmp_path / "v")]) == 2
    assert f"{bad}: line 2: field 'rejected' missing" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
    pool = _write(tmp_path / "pool.jsonl", _records(3, "math"))
    assert cli.main(["lrhp", "select", "--model", str(model), "--target", str(pool), "--pool", str(pool),
                     "--k", "4", "--out", str(tmp_path / "s.jsonl")]) == 2
    assert "--k 4: choose 1 <= K <= 3" in capsys.readouterr().err and not (tmp_path / "s.jsonl").exists()
    assert cli.main(["lrhp", "embed", "--model", str(tmp_path / "nope"), "--pairs", str(pool),
                     "--out", str(tmp_path / "v")]) == 2
    assert "no such model folder" in capsys.readouterr().err
