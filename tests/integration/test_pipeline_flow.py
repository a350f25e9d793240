"""The smoke DAG through the real Prefect flow, DVC and MLflow, in a throw-away git repository.

One module-scoped project is driven through a sequence a user would follow: a first run, a
no-change rerun, a changed SFT param, a bad input, and lineage/registry queries in between.
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import yaml

from alignflow.runtime.stage_graph import load_stage_graph
from tests.project import REPO, cli, run_flow

pytestmark = pytest.mark.integration
GRAPH = load_stage_graph(REPO)
STAGES = GRAPH.order()
TRACKED = [s for s in STAGES if not GRAPH.stages[s].always_changed]  # external_inputs logs no MLflow run
PUBLISHED = {name: info.registry["name"] for name, info in GRAPH.stages.items() if info.registry}


@pytest.fixture(scope="module")
def project(smoke_project):
    """The session's smoke run (tests/integration/conftest.py), shared with test_reproducible_outputs."""
    return smoke_project.root, smoke_project.env, smoke_project.outcomes


def _mlflow(root):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow/mlflow.db")
    return mlflow.MlflowClient()


def _lock(root):
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_first_run_executes_every_stage_and_prints_metrics(project):
    root, _, outcomes = project
    assert [outcomes[s]["status"] for s in STAGES] == ["checked" if GRAPH.stages[s].always_changed else "executed"
                                                      for s in STAGES]
    assert 0.5 < outcomes["world"]["metrics"]["label_agreement_with_gold"] <= 1.0
    assert outcomes["base_lm"]["metrics"]["val_ppl"] > 1.0
    assert "gold_reward_mean" in outcomes["sft"]["metrics"]
    metrics = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=root, capture_output=True, text=True,
                             env=project[1], check=True).stdout
    assert "label_agreement_with_gold" in metrics and "val_ppl" in metrics and "gold_reward_mean" in metrics
    for policy in ("ppo_gram", "ppo_bt", "dpo"):
        m = json.loads((root / f"models/{policy}/metrics.json").read_text())
        assert {"gold", "gold_gain_vs_sft_ci95_low", "proxy/gram", "proxy/bt", "kl", "win_rate_vs_sft"} <= set(m)
    weighted = json.loads((root / "models/dpo_margin/metrics.json").read_text())
    assert weighted["margin_weighted"] is True and 0.0 <= weighted["weight_zero_share"] < 1.0
    assert weighted["gold_minus_plain_dpo_ci95_low"] <= weighted["gold_minus_plain_dpo"] <= weighted["gold_minus_plain_dpo_ci95_high"]
    curve = (root / "models/ppo_gram/plots/overopt.csv").read_text().splitlines()
    assert curve[0] == "step,gold,proxy,kl,sqrt_kl" and len(curve) >= 3  # before, during and after training
    assert (root / "models/rlhf_compare/plots/overoptimisation.png").stat().st_size > 10_000


def test_mlflow_parent_and_child_runs_carry_lineage_tags(project):
    root, _, outcomes = project
    client = _mlflow(root)
    experiment = client.get_experiment_by_name("alignflow")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    lock = _lock(root)
    for stage in TRACKED:
        run = client.get_run(outcomes[stage]["run_id"])
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["alignflow.stage"] == stage and tags["alignflow.profile"] == "smoke"
        assert tags["alignflow.git_commit"] == head
        parent = client.get_run(tags["mlflow.parentRunId"])
        assert parent.data.tags["alignflow.kind"] == "flow"
        for dep in lock[stage]["deps"]:
            assert tags[f"dvc.dep.{dep['path']}"] == dep["md5"]
        for out in lock[stage]["outs"]:
            assert tags[f"dvc.out.{out['path']}"] == out["md5"]
        # the stage's output (reports/logs/<stage>.log, untracked) is kept with its run
        assert [a.path for a in client.list_artifacts(run.info.run_id, "logs")] == [f"logs/{stage}.log"]
        assert f"Running stage '{stage}'" in (root / "reports/logs" / f"{stage}.log").read_text()
    sft_run = client.get_run(outcomes["sft"]["run_id"])
    assert {d.dataset.name for d in sft_run.inputs.dataset_inputs} >= {"sft_train", "sft_val", "eval_prompts"}
    assert "sft.train.lr" in sft_run.data.params
    assert experiment is not None


class _Page(HTMLParser):
    """Rows of each table (by id) as lists of cell texts, and every image's src."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_report_page_holds_every_stage_claim_model_and_figure(project, tmp_path):
    """Fails if `alignflow report` left out a stage, a study's claim, a registered model or a figure, or
    wrote an image that is not an embedded PNG (the page must open with no server and no network)."""
    from alignflow.study import load_spec

    root, env, outcomes = project
    page = tmp_path / "report.html"
    proc = cli(root, env, "report", "--out", str(page))
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    stages = parsed.tables["stage-table"][1:]
    assert [row[0] for row in stages] == STAGES and {row[1] for row in stages} == {"fresh"}
    assert next(r for r in stages if r[0] == "base_lm")[3] != "\u2013"  # its run's seconds are shown
    expected = {(spec.name, c.name) for path in sorted((REPO / "studies").glob("*.yaml"))
                for spec in [load_spec(path)] for c in spec.claims}
    claims = parsed.tables["claims-table"][1:]
    from alignflow.report import METHODS

    assert {(next(k for k, v in METHODS.items() if v == r[0]), r[1]) for r in claims} == expected
    assert len(claims) == len(expected) and all(r[5] for r in claims)
    models = {row[0] for row in parsed.tables["model-table"][1:]}
    assert models == set(PUBLISHED.values())
    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in parsed.images]
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert all(png.startswith(b"\x89PNG") for png in pngs)
    on_disk = sum(1 for s in STAGES for out in GRAPH.stages[s].outs if (root / out).is_dir()
                  for png in (root / out).rglob("*.png") if "plots" in png.relative_to(root / out).parts)
    assert len(pngs) == on_disk + 1  # every stage figure, and the graph


# Tables in plots/ that DVC's templates cannot draw (one row per pair, or a method column in long format):
# the stage's PNG beside them is the figure, and dvc.yaml lists that.
NOT_DVC_PLOTS = {"pairs.csv", "pairs_blank.csv", "pairs_no_text.csv", "pairs_no_caption.csv", "pairs_random.csv", "map.csv",
                 "margins.csv", "selection_curves.csv", "overoptimisation.csv", "best_of_n.csv@rovrm_compare"}


def _declared_plots():
    entries = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    return {next(iter(e)) if isinstance(e, dict) else e: (next(iter(e.values())) if isinstance(e, dict) else {})
            for e in entries}


def test_dvc_plots_and_metrics_cover_every_figure_and_headline(project):
    """Fails if a stage writes a figure or curve that `dvc plots show` does not render, a curve without its
    title and axis labels, or a stage with a headline has no headline.json that `dvc metrics show` reads."""
    root, env, _ = project
    declared = _declared_plots()
    written = {png.relative_to(root).as_posix() for s in STAGES for out in GRAPH.stages[s].outs
               if (root / out).is_dir() for png in (root / out).rglob("plots/*") if png.suffix in (".png", ".csv")}
    undeclared = {p for p in written - set(declared)
                  if p.split("/")[-1] not in NOT_DVC_PLOTS and f"{p.split('/')[-1]}@{p.split('/')[-3]}" not in NOT_DVC_PLOTS}
    assert not undeclared, f"dvc.yaml plots is missing {sorted(undeclared)}"
    for path, props in declared.items():
        if path.endswith(".csv"):
            assert {"x", "y", "title", "x_label", "y_label"} <= set(props), path
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=root, env=env,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-3000:]
    rendered = json.loads(shown.stdout)
    assert not rendered.get("errors"), rendered["errors"]  # the smoke profile runs every stage, ablations too
    kinds = {path: items[0]["type"] for path, items in rendered["data"].items() if items}
    assert all(kinds.get(p) == "image" for p in written if p.endswith(".png") and p in declared), kinds
    for path in (p for p in written if p.endswith(".csv") and p in declared):
        assert kinds.get(path) == "vega", path
        spec = json.dumps(rendered["data"][path][0]["content"])
        assert declared[path]["title"] in spec and declared[path]["x_label"] in spec, path
    metrics = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=root, env=env,
                             capture_output=True, text=True)
    assert metrics.returncode == 0, metrics.stderr[-3000:]
    files = next(iter(json.loads(metrics.stdout).values()))["data"]
    for name in STAGES:
        info = GRAPH.stages[name]
        if not (info.meta or {}).get("headline"):
            continue
        path = f"{info.outs[0]}/headline.json"
        data = json.loads((root / path).read_text())
        assert files[path]["data"] == data and data, path


def test_registry_aliases_follow_the_gates(project):
    root, env, outcomes = project
    client = _mlflow(root)
    assert {"base-lm", "policy-sft", "reward-gram", "reward-bt", "policy-ppo-gram", "policy-ppo-bt",
            "policy-dpo", "reward-visual", "reward-visual-baseline"} <= set(PUBLISHED.values())
    for stage, name in PUBLISHED.items():
        published = outcomes[stage]["published"]
        gate = json.loads((root / GRAPH.stages[stage].registry["metrics"]).read_text())["gate"]
        assert str(client.get_model_version_by_alias(name, "candidate").version) == published["version"]
        aliases = client.get_registered_model(name).aliases
        assert ("champion" in aliases) == bool(gate["passed"]) == published["champion"]
    listing = cli(root, env, "registry", "list")
    assert listing.returncode == 0 and "policy-sft" in listing.stdout
    path = cli(root, env, "registry", "get", "base-lm@candidate").stdout.strip()
    from pipelines.models.causal_lm import load_causal_lm

    assert load_causal_lm(path).config.num_hidden_layers == 2


def test_second_run_with_nothing_changed_executes_nothing(project):
    root, env, _ = project
    proc, outcomes = run_flow(root, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {o["status"] for s, o in outcomes.items() if s in TRACKED} == {"up-to-date"}
    assert outcomes["external_inputs"]["status"] == "checked"
    assert "up-to-date" in proc.stdout + proc.stderr


def test_changing_an_sft_param_reruns_only_sft_and_its_downstream(project):
    root, env, first = project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sft"]["train"]["max_steps"] += 2
    # real-data scoring rides along: rm_compare is downstream of sft anyway
    hh = [{"chosen": f"\n\nHuman: What is {i} plus 1?\n\nAssistant: {i + 1}",
           "rejected": f"\n\nHuman: What is {i} plus 1?\n\nAssistant: I cannot help with that."} for i in range(3)]
    (root / "hh_sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hh))
    params["rm_compare"]["extra_eval"]["source"] = "hh_sample.jsonl"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    affected = {"sft", *GRAPH.downstream("sft")}
    assert affected == {"sft", "sft_samples", "rm_compare", "ppo@ppo_gram", "ppo@ppo_bt", "dpo", "best_of_n", "rlhf_compare",
                        "lisa", "dpo_margin"}
    status = json.loads(cli(root, env, "status", "--json").stdout)
    assert {s for s in STAGES if status[s]} == affected
    assert any("sft.train.max_steps" in reason or "sft" in reason for reason in status["sft"])
    proc, outcomes = run_flow(root, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {s for s in STAGES if outcomes[s]["status"] == "executed"} == affected
    assert all(outcomes[s]["status"] == "up-to-date" for s in TRACKED if s not in affected)
    compare = json.loads((root / "models/rm_compare/metrics.json").read_text())
    assert compare["extra/n"] == 3 and 0.0 <= compare["gram/extra/acc_label"] <= 1.0
    assert int(outcomes["sft"]["published"]["version"]) == int(first["sft"]["published"]["version"]) + 1


def test_saved_runs_compare_with_dvc_metrics_diff(project, smoke_project):
    """The dvc.lock policy: a run is saved on results/NAME without touching HEAD or the checkout, and
    `dvc metrics diff` between two saved runs shows what the SFT change above moved."""
    root, env, _ = project
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()
    head, current = git("rev-parse", "HEAD"), (root / "dvc.lock").read_text()
    (root / "dvc.lock").write_text(smoke_project.first_lock)
    try:
        first = cli(root, env, "results", "save", "first", "--json")
    finally:
        (root / "dvc.lock").write_text(current)
    assert first.returncode == 0, first.stderr[-2000:]
    now = cli(root, env, "results", "save", "now", "--json")
    assert now.returncode == 0, now.stderr[-2000:]
    assert git("rev-parse", "HEAD") == head and git("ls-files", "dvc.lock") == ""
    assert git("show", "results/now:dvc.lock") == current.strip()
    assert yaml.safe_load(git("show", "results/now:params.yaml"))["sft"] == yaml.safe_load(
        (root / "params.yaml").read_text())["sft"]  # the rendered params that produced it
    diff = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", "results/first", "results/now", "--json"],
                          cwd=root, env=env, capture_output=True, text=True)
    assert diff.returncode == 0, diff.stderr[-3000:]
    changed = json.loads(diff.stdout)
    assert "models/sft/headline.json" in changed and "models/base_lm/headline.json" not in changed
    bad = cli(root, env, "results", "save", "no/slash")
    assert bad.returncode != 0 and "results name" in bad.stderr


def test_lineage_of_a_path_and_of_a_registered_model(project):
    root, env, _ = project
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    info = json.loads(cli(root, env, "lineage", "models/sft/model", "--json").stdout)
    lock = _lock(root)
    assert info["stage"] == "sft" and info["path"] == "models/sft"
    assert info["output_md5"] == lock["sft"]["outs"][0]["md5"]
    assert {d["path"] for d in info["inputs"]} >= {"models/base_lm", "data/world/sft_train.jsonl"}
    assert info["params"]["sft.train.max_steps"] == yaml.safe_load((root / "params.yaml").read_text())["sft"]["train"]["max_steps"]
    assert info["mlflow_run"]["git_commit"] == head
    world = json.loads(cli(root, env, "lineage", "data/world/prefs_train.jsonl", "--json").stdout)
    assert world["stage"] == "world" and world["downstream"] == GRAPH.downstream("world")
    assert {"prefs", "tokenizer", "base_lm", "sft", "gram_finetune@gram", "bt_rm"} <= set(world["downstream"])
    by_alias = cli(root, env, "lineage", "policy-sft@candidate")
    assert by_alias.returncode == 0, by_alias.stderr
    assert "produced by:   stage 'sft'" in by_alias.stdout and info["mlflow_run"]["run_id"] in by_alias.stdout
    missing = cli(root, env, "lineage", "no/such/file")
    assert missing.returncode == 2 and "no stage" in missing.stderr


def test_a_study_runs_its_grid_as_dvc_experiments_and_resumes(project):
    root, env, _ = project
    spec = {"name": "tiny", "grid": {"reward_seed": [0, 1], "prefs.limit": [120]}, "seed_key": "reward_seed",
            "targets": ["bt_rm"], "models": {"BT": "models/bt_rm/metrics.json"},
            "metrics": ["test_id/acc_gold", "test_ood/acc_gold"],
            "claims": [{"name": "BT is better in distribution than out",
                        "better": {"model": "BT", "metric": "test_id/acc_gold"},
                        "worse": {"model": "BT", "metric": "test_ood/acc_gold"}}]}
    (root / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = cli(root, env, "study", "tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads((root / "reports/tiny/claims.json").read_text())
    assert [c["reward_seed"] for c in report["cells"]] == [0, 1]
    [claim] = report["claims"]
    assert claim["n_seeds"] == 2 and claim["verdict"] in {"reproduced", "reversed", "inconclusive"}
    assert (root / "reports/tiny/claims.png").stat().st_size > 0
    assert "BT is better in distribution than out" in (root / "reports/tiny/claims.md").read_text()
    shown = subprocess.run(["dvc", "exp", "show", "--json", "--no-pager"], cwd=root, env=env, capture_output=True,
                           text=True, check=True).stdout
    assert "tiny-reward_seed0-prefs_limit120" in shown and "tiny-reward_seed1-prefs_limit120" in shown
    again = cli(root, env, "study", "tiny.yaml")
    assert again.returncode == 0 and again.stdout.count("exists, skipped") == 2


def test_bad_preference_file_fails_cleanly_and_registers_nothing(project):
    root, env, _ = project
    (root / "bad_prefs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                                          '{"prompt": "p", "chosen": "b", "rejected": "b"}\n')
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prefs"]["path"] = "bad_prefs.jsonl"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (root / "data/prefs/train.jsonl").read_text()
    proc, _ = run_flow(root, env, "--stages", "prefs")
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # the stage's own line is the last thing the user sees
    assert last.startswith("alignflow run failed: bad input: stage 'prefs': ") and \
        "bad_prefs.jsonl: line 2: field 'rejected'" in last, proc.stderr[-3000:]
    assert "Traceback" not in output
    # one attempt, never retried (a retry appends its output to the stage's log of this run)
    assert (root / "reports/logs/prefs.log").read_text().count("Running stage 'prefs'") == 1
    assert (root / "data/prefs/train.jsonl").read_text() == before
    assert not list((root / "data").glob(".prefs.tmp-*"))


def test_base_lm_starts_from_a_local_hf_checkpoint_it_did_not_produce(project):
    root, env, _ = project
    from transformers import GPT2Config, GPT2LMHeadModel

    from pipelines.models.causal_lm import load_causal_lm
    from pipelines.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(str(root / "models/tokenizer"))
    checkpoint = root.parent / "gpt2-tiny"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                    ).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["base_lm"]["init_from"] = str(checkpoint)
    params["base_lm"]["train"]["max_steps"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc, outcomes = run_flow(root, env, "--stages", "base_lm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outcomes["base_lm"]["status"] == "executed" and "sft" not in outcomes
    assert load_causal_lm(str(root / "models/base_lm/model")).config.model_type == "gpt2"
    assert outcomes["base_lm"]["metrics"]["train_steps"] == 3
