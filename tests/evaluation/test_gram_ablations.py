"""The GRAM ablation table: one row and one metrics family per model the params list, checked inputs."""
from __future__ import annotations

import json

import pytest

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, StagePaths, parse_stage_args
from stages import gram_ablations

SPLITS = ("test_id", "test_ood", "adapt_test")


def _model_metrics(acc: float) -> dict:
    m = {"test_id/position_bias": 0.01, "test_id/ece": 0.05}
    for split in SPLITS:
        m.update({f"{split}/acc_gold": acc, f"{split}/acc_gold_ci95_low": acc - 0.05,
                  f"{split}/acc_gold_ci95_high": acc + 0.05, f"{split}/acc_label": acc - 0.1})
    return m


def _run(root, models: list[dict], argv: list[str]) -> None:
    paths = StagePaths((), ("out",))
    name, args = parse_stage_args("gram_ablations", argv, paths, gram_ablations.options)
    paths.take(args, root, name)
    ctx = StageContext(name, root, {"gram_ablations": {"models": models}}, None, args=args, paths=paths)
    gram_ablations.run(ctx)
    ctx._commit_outputs()


def test_table_and_metrics_hold_every_listed_model(tmp_path):
    accs = {"gram": 0.8, "gram_nopre": 0.7, "bt_rm": 0.6}
    argv = ["--metrics"]
    for name, acc in accs.items():
        path = tmp_path / f"models/{name}/metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_model_metrics(acc)))
        argv.append(f"{name}=models/{name}/metrics.json")
    models = [{"name": n, "label": n.upper()} for n in accs]
    _run(tmp_path, models, [*argv, "--out", "models/gram_ablations"])
    out = tmp_path / "models/gram_ablations"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_models"] == 3
    assert {f"{n}/test_ood/acc_gold": a for n, a in accs.items()}.items() <= metrics.items()
    table = (out / "comparison.md").read_text()
    assert all(f"| {n.upper()} |" in table for n in accs)


def test_a_listed_model_without_metrics_names_the_key(tmp_path):
    (tmp_path / "models/gram").mkdir(parents=True)
    (tmp_path / "models/gram/metrics.json").write_text(json.dumps(_model_metrics(0.8)))
    with pytest.raises(ParamsError, match="gram_ablations.models names gram_eps0"):
        _run(tmp_path, [{"name": "gram", "label": "GRAM"}, {"name": "gram_eps0", "label": "eps 0"}],
             ["--metrics", "gram=models/gram/metrics.json", "--out", "models/gram_ablations"])
    assert not (tmp_path / "models/gram_ablations").exists()
