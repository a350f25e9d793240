"""The issue-12 drills on a real project: stale code is seen, files behind params are seen, SIGTERM rolls back.

One module-scoped project runs the cheap head of both branches (world, prefs, tokenizer, base_lm, and the
speech corpus, vocabulary and features) on the smoke profile; each test then changes one thing and asks
`alignflow status`, or interrupts a run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from alignflow.code_deps import area_of
from tests.project import cli, make_project, project_env, run_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HEAD = ["prefs", "base_lm", "speech_features", "speech_vocab"]
RAN = {"external_inputs", "world", "prefs", "tokenizer", "base_lm", "speech_corpus", "speech_vocab",
       "speech_features"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("drills") / "alignflow")
    env = project_env(tmp_path_factory.mktemp("home"))
    proc, outcomes = run_flow(root, env, "--profile", "smoke", "--stages", *HEAD)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert set(outcomes) == RAN
    return root, env


def _stale(root, env) -> dict[str, list[str]]:
    proc = cli(root, env, "status", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {name: reasons for name, reasons in json.loads(proc.stdout).items() if name in RAN and reasons}


def _cmdline(proc) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # gone or a zombie between listing and reading
        return ""


def _alive(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _edited(path, edit):
    original = path.read_text()
    path.write_text(edit(original))
    return original


def test_a_comment_in_shared_code_makes_exactly_its_importers_stale(project):
    """Breaks if stages/common.py or pipelines/models were missing from a stage's deps (the stage would stay "up to
    date") or were deps of stages that import nothing from them (the speech head would go stale). Code deps name a
    subpackage as its folder, so an edit to causal_lm.py makes every importer of pipelines/models stale."""
    root, env = project
    assert _stale(root, env) == {}
    for rel, importers in (("stages/common.py", {"tokenizer", "base_lm"}),
                           ("pipelines/models/causal_lm.py", {"tokenizer", "base_lm"})):  # both import pipelines/models
        original = _edited(root / rel, lambda text: text + "\n# a comment\n")
        try:
            stale = _stale(root, env)
        finally:
            (root / rel).write_text(original)
        dep = area_of(rel)  # dvc.yaml lists a subpackage's modules as its folder (pipelines/models)
        changed = {n for n, reasons in stale.items() if any(dep in r for r in reasons)}
        assert changed == importers, (rel, stale)
        upstream_only = set(stale) - changed
        assert all(any(r.startswith("upstream stale") for r in stale[n]) for n in upstream_only)
        assert not set(stale) & {"world", "prefs", "speech_corpus", "speech_vocab", "speech_features"}
    assert _stale(root, env) == {}


def test_a_changed_file_behind_an_unchanged_param_makes_its_stage_stale(project):
    """Breaks if DVC tracked only the param's value: the real file is rewritten in place, the path stays."""
    root, env = project
    real = root.parent / "real_prefs.jsonl"
    rows = [{"prompt": f"What is {i} plus 1?", "chosen": str(i + 1), "rejected": "I cannot help."} for i in range(8)]
    real.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["prefs"]["path"] = str(real)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc, outcomes = run_flow(root, env, "--stages", "prefs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outcomes["prefs"]["status"] == "executed" and outcomes["prefs"]["metrics"]["n_pairs"] == 8
    assert "prefs" not in _stale(root, env)
    real.write_text(real.read_text().replace('"2"', '"two"'))
    stale = _stale(root, env)
    assert any("external input changed: prefs.path" in r for r in stale["prefs"]), stale
    assert set(stale) == {"prefs"}  # nothing downstream of prefs ran in this project
    proc, outcomes = run_flow(root, env, "--stages", "prefs")
    assert proc.returncode == 0 and outcomes["prefs"]["status"] == "executed"
    assert '"two"' in (root / "data/prefs/train.jsonl").read_text()


def test_sigterm_stops_the_stage_restores_outputs_and_leaves_no_process(project):
    """Breaks if alignflow run ignored SIGTERM while DVC waits on the stage, retried the interrupted stage, left the
    stage or Prefect's server running, or left the stage's output folder deleted or half-written."""
    root, env = project
    weights = root / "models/base_lm/model/model.safetensors"
    before = weights.read_bytes()
    original_params = (root / "params.yaml").read_text()
    params = yaml.safe_load(original_params)
    params["base_lm"]["train"]["max_steps"] = 5000
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = open(root.parent / "sigterm.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "alignflow.cli", "run", "--stages", "base_lm"], cwd=root, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    stage = None
    while stage is None and time.monotonic() < deadline:
        time.sleep(0.5)
        stage = next((p for p in me.children(recursive=True) if "stages.base_lm" in _cmdline(p)), None)
    assert stage is not None, (root.parent / "sigterm.log").read_text()[-3000:]
    time.sleep(3)  # well into training
    family = [me, *me.children(recursive=True)]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    elapsed = time.monotonic() - started
    log.close()
    output = (root.parent / "sigterm.log").read_text()
    assert rc == 128 + signal.SIGTERM, output[-3000:]
    assert elapsed < 10, elapsed
    # an interrupted stage is not retried (a retry appends its output to the stage's log of this run)
    assert (root / "reports/logs/base_lm.log").read_text().count("Running stage 'base_lm'") == 1, output[-3000:]
    time.sleep(1)
    assert [p.pid for p in family if _alive(p)] == []
    assert weights.read_bytes() == before
    assert not [p for p in (root / "models").iterdir() if ".tmp-" in p.name]
    (root / "params.yaml").write_text(original_params)
    assert "base_lm" not in _stale(root, env)
