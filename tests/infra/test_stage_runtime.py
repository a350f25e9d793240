"""A stage that fails leaves no output behind, exits 2 on bad input, and marks its MLflow run FAILED."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from alignflow.runtime.stage import stage_main


def _project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 3, "profile": "unit", "toy": {"n": 2}}))
    monkeypatch.setenv("ALIGNFLOW_ROOT", str(tmp_path))
    return tmp_path


def _runs(stage):
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("alignflow")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`alignflow.stage` = '{stage}'")


TOY_ARGV = ["--out", "out/toy"]  # what the toy stage's dvc.yaml command would pass


def test_successful_stage_commits_output_and_logs(tmp_path, monkeypatch, tracking):
    root = _project(tmp_path, monkeypatch)

    def run(ctx):
        assert ctx.seed == 3 and ctx.block("toy") == {"n": 2}
        out = ctx.output("out")
        (out / "a.txt").write_text("x")
        ctx.write_metrics(out, {"score": 0.5, "nested": {"k": 1}})

    stage_main("toy", run, outputs=("out",), argv=TOY_ARGV)
    assert (root / "out/toy/a.txt").read_text() == "x"
    [run_info] = _runs("toy")
    assert run_info.info.status == "FINISHED"
    assert run_info.data.metrics["nested.k"] == 1.0 and run_info.data.params["toy.n"] == "2"


def test_failed_stage_keeps_previous_output_and_exits_2_on_bad_input(tmp_path, monkeypatch, tracking, capsys):
    root = _project(tmp_path, monkeypatch)
    (root / "out/toy").mkdir(parents=True)
    (root / "out/toy/old.txt").write_text("previous")

    def run(ctx):
        out = ctx.output("out")
        (out / "half.txt").write_text("half")
        raise ValueError("data/x.jsonl: line 3: field 'chosen': empty")

    with pytest.raises(SystemExit) as exit_info:
        stage_main("toy", run, outputs=("out",), argv=TOY_ARGV)
    assert exit_info.value.code == 2
    assert "line 3: field 'chosen'" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "out").iterdir()) == ["toy"]
    assert [p.name for p in (root / "out/toy").iterdir()] == ["old.txt"]
    [run_info] = _runs("toy")
    assert run_info.info.status == "FAILED" and "line 3" in run_info.data.tags["alignflow.error"]


def test_crash_exits_1(tmp_path, monkeypatch, tracking):
    _project(tmp_path, monkeypatch)

    def run(ctx):
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as exit_info:
        stage_main("toy", run, outputs=("out",), argv=TOY_ARGV)
    assert exit_info.value.code == 1


def test_metric_names_mlflow_rejects_are_made_safe():
    from alignflow.runtime.stage import mlflow_metric_name

    assert mlflow_metric_name("ms_per_utt/nast_greedy@b1") == "ms_per_utt/nast_greedy_b1"
    assert mlflow_metric_name("test_id/acc_gold") == "test_id/acc_gold"


# ---- machine facts stay out of tracked outputs ---------------------------------------------------


def test_machine_facts_go_to_the_untracked_folder_and_mlflow_not_metrics_json(tmp_path, monkeypatch, tracking):
    """Fails if a wall time reaches metrics.json, if facts.json is missing the stage's facts or the
    runtime's own (stage_seconds, host), if MLflow misses them, or if the headline table cannot show them."""
    from alignflow.runtime.stage_graph import StageInfo
    from alignflow.stage_results import headline

    root = _project(tmp_path, monkeypatch)

    def run(ctx):
        out = ctx.output("out")
        ctx.write_machine_facts({"train_seconds": 1.5, "split": {"seconds": 0.25}})
        (ctx.machine_dir() / "speed.csv").write_text("batch,ms\n1,2.0\n")
        ctx.write_metrics(out, {"score": 0.5})

    stage_main("toy", run, outputs=("out",), argv=TOY_ARGV)
    assert json.loads((root / "out/toy/metrics.json").read_text()) == {"score": 0.5}
    facts = json.loads((root / "reports/machine/toy/facts.json").read_text())
    assert facts["train_seconds"] == 1.5 and facts["split"] == {"seconds": 0.25}
    assert facts["stage_seconds"] >= 0 and facts["host"] and facts["cpu_count"] >= 1 and facts["processes"] == 1
    assert (root / "reports/machine/toy/speed.csv").is_file()
    [run_info] = _runs("toy")
    assert run_info.data.metrics["train_seconds"] == 1.5 and "stage_seconds" in run_info.data.metrics
    info = StageInfo("toy", "", (), ("out/toy",), (), {"headline": ["score", "train_seconds", "split.seconds"]})
    assert headline(root, info) == {"score": 0.5, "train_seconds": 1.5, "split.seconds": 0.25}


def test_failed_stage_keeps_the_previous_machine_facts(tmp_path, monkeypatch, tracking):
    """Facts describe the run that made the current outputs: a failed rerun must not replace them."""
    root = _project(tmp_path, monkeypatch)
    stage_main("toy", lambda ctx: ctx.write_machine_facts({"train_seconds": 1.0}), outputs=("out",), argv=TOY_ARGV)

    def failing(ctx):
        ctx.write_machine_facts({"train_seconds": 9.0})
        raise RuntimeError("boom")

    with pytest.raises(SystemExit):
        stage_main("toy", failing, outputs=("out",), argv=TOY_ARGV)
    assert json.loads((root / "reports/machine/toy/facts.json").read_text())["train_seconds"] == 1.0
    assert [p.name for p in (root / "reports/machine").iterdir()] == ["toy"]


# ---- what a killed stage leaves behind -----------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    """`.NAME.tmp-PID` of a dead PID goes, a live PID's stays, and a moved-aside previous output
    (`.NAME.old-PID`) comes back when the kill left no output. Fails if cleanup keys on anything but
    a dead writer, or deletes the only copy of the last good output."""
    from alignflow.runtime.atomic import remove_dead_temps

    dead, live = _dead_pid(), os.getppid()
    final = tmp_path / "models/base_lm"
    for name in (f".base_lm.tmp-{dead}", f".base_lm.tmp-{live}", f".base_lm.old-{dead}", f".base_lm_x.tmp-{dead}"):
        (tmp_path / "models" / name).mkdir(parents=True)
    (tmp_path / f"models/.base_lm.old-{dead}/model.bin").write_text("previous")
    (tmp_path / f"models/.base_lm.json.tmp-{dead}-abc").write_text("half")
    remove_dead_temps(final)
    assert (final / "model.bin").read_text() == "previous"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == \
        sorted([".base_lm.json.tmp-%d-abc" % dead, f".base_lm.tmp-{live}", f".base_lm_x.tmp-{dead}", "base_lm"])
    (tmp_path / f"models/.base_lm.old-{dead}").mkdir()
    remove_dead_temps(final)  # an output exists now: the moved-aside copy is stale
    assert not (tmp_path / f"models/.base_lm.old-{dead}").exists() and (final / "model.bin").is_file()


def test_temporary_names_carry_the_writer_pid(tmp_path, monkeypatch):
    """Cleanup can only tell dead writers' files apart if every temporary name holds the PID."""
    import tempfile

    from pipelines.atomic import atomic_dir, write_text_atomic

    seen = []
    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda **kw: (seen.append(kw["prefix"]), real(**kw))[1])
    write_text_atomic(tmp_path / "a.json", "{}")
    with atomic_dir(tmp_path / "folder") as staged:
        seen.append(staged.name)
    assert seen[0] == f".a.json.tmp-{os.getpid()}-" and seen[1].startswith(f".folder.tmp-{os.getpid()}-")


def test_running_runs_of_dead_processes_are_marked_killed(tracking):
    """RUNNING runs of this stage whose process (this host) is gone become KILLED; a live process's
    run, another host's run and another stage's run are left alone."""
    import socket

    import mlflow

    from alignflow.runtime.leftovers import mark_dead_runs_killed

    client = mlflow.MlflowClient()
    exp = client.create_experiment("alignflow")
    host, dead = socket.gethostname(), str(_dead_pid())

    def started(stage, pid, on_host=host):
        tags = {"alignflow.stage": stage, "alignflow.pid": pid, "alignflow.host": on_host}
        return client.create_run(exp, tags=tags).info.run_id

    runs = {"dead": started("toy", dead), "live": started("toy", str(os.getpid())),
            "elsewhere": started("toy", dead, "another-host"), "other_stage": started("sft", dead)}
    assert mark_dead_runs_killed(client, exp, "toy") == [runs["dead"]]
    status = {k: client.get_run(v).info.status for k, v in runs.items()}
    assert status == {"dead": "KILLED", "live": "RUNNING", "elsewhere": "RUNNING", "other_stage": "RUNNING"}
    assert "ended without closing" in client.get_run(runs["dead"]).data.tags["alignflow.error"]


def test_stage_run_records_its_pid_and_host(tmp_path, monkeypatch, tracking):
    import socket

    _project(tmp_path, monkeypatch)
    stage_main("toy", lambda ctx: None, outputs=("out",), argv=TOY_ARGV)
    [run_info] = _runs("toy")
    assert run_info.data.tags["alignflow.pid"] == str(os.getpid())
    assert run_info.data.tags["alignflow.host"] == socket.gethostname()


# ---- checkpoint keys ---------------------------------------------------------------------------


def _dvc_project(root, monkeypatch):
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True).close()
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy": {
        "cmd": "python -m toy", "deps": ["data/in.txt", "lib"], "params": ["seed", "toy"], "outs": ["out/toy"]}}}))
    (root / "data").mkdir()
    (root / "data/in.txt").write_text("v1\n")
    (root / "lib").mkdir()
    (root / "lib/a.py").write_text("x = 1\n")
    monkeypatch.chdir(root)  # DVC runs stage commands in the project root
    return root


def test_checkpoint_dir_changes_with_params_inputs_and_code(tmp_path, monkeypatch):
    """Resume state is keyed on the caller's key, the stage's params, its deps' content and the loaded
    code. Fails if any of them can change while the same checkpoint folder is handed back."""
    import alignflow.runtime.stage as stage_mod
    from alignflow.runtime.stage import StageContext

    root = _dvc_project(tmp_path, monkeypatch)
    params = {"seed": 1, "toy": {"lr": 0.1}, "other": {"x": 1}}

    def folder(p=params, key="k"):
        return StageContext("toy", root, p, None).checkpoint_dir(key).name

    first = folder()
    assert folder() == first
    assert folder(key="k2") != first
    assert folder({**params, "other": {"x": 2}}) == first  # not a param of this stage
    assert folder({**params, "toy": {"lr": 0.2}}) != first
    (root / "data/in.txt").write_text("v2\n")
    assert folder() != first
    (root / "data/in.txt").write_text("v1\n")
    (root / "lib/a.py").write_text("x = 2\n")  # a dep folder's file
    assert folder() != first
    (root / "lib/a.py").write_text("x = 1\n")
    assert folder() == first
    monkeypatch.setattr(stage_mod, "loaded_code_digest", lambda: "other code")
    assert folder() != first


def test_loaded_code_digest_follows_the_source_of_imported_project_modules(tmp_path, monkeypatch):
    """Fails if editing a project module that this process imported leaves the digest unchanged."""
    import importlib.util

    from alignflow.runtime.fingerprint import loaded_code_digest

    (tmp_path / "pipelines").mkdir()
    source = tmp_path / "pipelines/shaping.py"
    source.write_text("STEP = 1\n")
    spec = importlib.util.spec_from_file_location("pipelines_shaping_probe", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pipelines_shaping_probe", module)
    before = loaded_code_digest(tmp_path)
    source.write_text("STEP = 1  # a comment is a change\n")
    assert loaded_code_digest(tmp_path) != before
    (tmp_path / "pipelines/unused.py").write_text("")  # not imported: not part of the digest
    source.write_text("STEP = 1\n")
    assert loaded_code_digest(tmp_path) == before


def test_a_bad_process_count_exits_2_before_anything_is_launched(tmp_path, monkeypatch, capsys):
    """Fails if `processes: 0` starts torchrun (or the stage) instead of one line naming the key and exit 2."""
    root = _project(tmp_path, monkeypatch)
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 3, "profile": "unit",
                                                      "toy": {"train": {"processes": 0}}}))
    monkeypatch.setenv("ALIGNFLOW_TRACKING", "off")
    monkeypatch.delenv("ALIGNFLOW_LAUNCHED", raising=False)
    ran = []
    with pytest.raises(SystemExit) as exit_info:
        stage_main("toy", ran.append, outputs=("out",), argv=TOY_ARGV)
    assert exit_info.value.code == 2 and not ran
    assert "params.yaml: toy.train.processes: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_a_rank_other_than_0_stages_into_scratch_and_commits_nothing(tmp_path, monkeypatch):
    """Fails if a non-main rank's `ctx.output`/`machine_dir` land beside the real outputs, or if its
    commit publishes them or machine facts (two ranks would race to replace the same folders)."""
    import argparse

    from alignflow.runtime.stage import StageContext
    from alignflow.runtime.stage_paths import StagePaths

    root = _project(tmp_path, monkeypatch)
    scratch = tmp_path / "scratch-rank1"
    scratch.mkdir()
    paths = StagePaths((), ("out",))
    paths.take(argparse.Namespace(path_out="out/toy"), root, "toy")
    ctx = StageContext("toy", root, {"seed": 3}, None, paths=paths, scratch=scratch)
    out = ctx.output("out")
    (out / "model.bin").write_text("rank 1")
    (ctx.machine_dir() / "speed.csv").write_text("1")
    ctx.write_machine_facts({"train_seconds": 1.0})
    assert scratch in out.parents and not (root / "out").exists()
    facts = ctx._commit_outputs()
    assert facts["train_seconds"] == 1.0
    assert not (root / "out").exists() and not (root / "reports").exists() and not scratch.exists()


def test_headline_json_holds_the_stage_headline_without_machine_facts(tmp_path, monkeypatch, tracking):
    """`dvc exp show` reads headline.json: the meta.headline metrics, flat scalars, no wall times."""
    from dvc.repo import Repo

    root = _project(tmp_path, monkeypatch)
    Repo.init(str(root), no_scm=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy": {
        "cmd": "python -m toy --out out/toy", "outs": ["out/toy"],
        "meta": {"headline": ["nested.k", "score", "train_seconds", "absent", "ci"]}}}}))

    def run(ctx):
        ctx.write_machine_facts({"train_seconds": 1.5})
        ctx.write_metrics(ctx.output("out"), {"score": 0.5, "other": 2, "nested": {"k": 1, "j": 3}, "ci": [0.1, 0.9]})

    stage_main("toy", run, outputs=("out",), argv=TOY_ARGV)
    text = (root / "out/toy/headline.json").read_text()
    assert json.loads(text) == {"nested.k": 1, "score": 0.5, "ci.0": 0.1, "ci.1": 0.9}  # scalars only, as DVC shows
    assert json.loads((root / "out/toy/metrics.json").read_text())["other"] == 2
