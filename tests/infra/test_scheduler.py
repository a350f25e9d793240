"""The parallel run's pieces, fast: which stage starts when, what each stage's process gets, where its output goes,
and which stages the up-front `dvc status` sends to DVC."""
from __future__ import annotations

import sys

import networkx as nx
import pytest

from alignflow import interrupt
from alignflow.dag_schedule import DagSchedule
from alignflow.runtime import tracking
from alignflow.runtime.stage_graph import StageGraph, StageInfo
from alignflow.stage_process import StageProcess, run_stage_process, stage_env, thread_share
from alignflow.stale import plan

# the toy DAG of tests/toy_dag.py: two branches and a join
NEEDS = {"left1": [], "left2": ["left1"], "right1": [], "right2": ["right1"], "join": ["left2", "right2"]}
ORDER = ["left1", "left2", "right1", "right2", "join"]


def _drain(schedule: DagSchedule, fail: set[str] = frozenset()) -> tuple[list[str], int]:
    """Run the schedule to the end, finishing the oldest running stage first: (start order, most at once)."""
    started, most = [], 0
    while not schedule.done:
        started += schedule.ready()
        most = max(most, len(schedule.running))
        if schedule.running:
            name = schedule.running[0]
            schedule.finish(name, name not in fail)
    return started, most


def test_one_job_is_the_serial_order_and_two_jobs_overlap_the_branches():
    """Breaks if `--jobs 1` started stages in another order than the serial one, if more than `jobs` stages ran at
    once, or if the two independent branches never overlapped at two jobs."""
    assert _drain(DagSchedule(ORDER, NEEDS, 1)) == (ORDER, 1)
    schedule = DagSchedule(ORDER, NEEDS, 2)
    assert schedule.ready() == ["left1", "right1"]  # both branch heads at once
    started, most = _drain(schedule)
    assert most == 2 and started[-1] == "join" and set(started) == set(ORDER) - {"left1", "right1"}


def test_more_jobs_start_the_longest_chain_first():
    """Breaks if, at two jobs, a short branch that comes first in the serial order took a slot before the head of
    the longest chain (it would leave the long branch running alone at the end), or if one job stopped following
    the serial order."""
    needs = {"short": [], "tail": ["short"], "long1": [], "long2": ["long1"], "long3": ["long2"], "side": []}
    order = ["short", "tail", "side", "long1", "long2", "long3"]
    schedule = DagSchedule(order, needs, 2)
    assert schedule.chain == {"short": 2, "tail": 1, "side": 1, "long1": 3, "long2": 2, "long3": 1}
    assert schedule.ready() == ["long1", "short"]
    schedule.finish("short", True)
    assert schedule.ready() == ["tail"]  # tail and side both end their chains: the serial order decides
    assert _drain(DagSchedule(order, needs, 1))[0] == order


def test_a_failure_stops_its_descendants_only():
    """Breaks if a failed stage's descendants ran, were not reported with the failed stage's name, or if the
    independent branch stopped too."""
    schedule = DagSchedule(ORDER, NEEDS, 2)
    started, _ = _drain(schedule, fail={"right1"})
    assert schedule.failed == ["right1"] and set(schedule.succeeded) == {"left1", "left2"}
    assert schedule.blocked == {"right2": ["right1"], "join": ["right1"]}
    assert "join" not in started and "right2" not in started


def test_stop_starts_nothing_more():
    """Breaks if an interrupted run went on submitting stages."""
    schedule = DagSchedule(ORDER, NEEDS, 2)
    schedule.ready()
    assert schedule.stop() == ["left2", "right2", "join"]
    schedule.finish("left1", True)
    assert schedule.ready() == [] and not schedule.done
    schedule.finish("right1", True)
    assert schedule.done


def test_each_stage_gets_its_own_environment_and_share_of_the_cores():
    """Breaks if a stage's environment were the flow's os.environ itself (a change would leak into concurrent
    stages), if it lacked the parent run / record / flow run, if the thread share ignored the concurrent stages
    or dropped to zero, or if an explicit OMP_NUM_THREADS of the user were overridden."""
    base = {"PATH": "/bin", tracking.PARENT_ENV: "stale-parent"}
    env = stage_env(base, parent_run_id="p1", record="/tmp/r.jsonl", flow_run_id="f1", threads=3)
    assert env is not base and base == {"PATH": "/bin", tracking.PARENT_ENV: "stale-parent"}
    assert env[tracking.PARENT_ENV] == "p1" and env[tracking.RECORD_ENV] == "/tmp/r.jsonl"
    assert env[tracking.FLOW_RUN_ENV] == "f1" and env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    outside = stage_env(base, parent_run_id=None, record="/tmp/r.jsonl", flow_run_id=None, threads=None)
    assert tracking.PARENT_ENV not in outside and "OMP_NUM_THREADS" not in outside
    assert stage_env({"OMP_NUM_THREADS": "7"}, parent_run_id=None, record="r", flow_run_id=None,
                     threads=2)["OMP_NUM_THREADS"] == "7"
    assert [thread_share(16, n) for n in (1, 2, 3, 16, 40)] == [16, 8, 5, 1, 1]
    assert thread_share(2, 2) == 1 and thread_share(1, 1) == 1


def test_stage_output_is_merged_teed_to_its_log_and_to_the_logger(tmp_path):
    """Breaks if stderr were read after stdout through a second pipe (a child filling stderr first would hang this
    test), if the log missed either stream, if a progress bar's redraws reached the logger one by one, or if
    the process group were not registered for an interrupt while it ran."""
    script = ("import sys\n"
              "sys.stderr.write('e' * 200000 + '\\n'); sys.stderr.flush()\n"  # more than a pipe buffer, first
              "print('out line', flush=True)\n"
              "sys.stderr.write('bar 1%\\rbar 50%\\rbar 100%\\n')\n"
              "import os; print('group', os.getpgid(0) == os.getpid(), flush=True)\n"
              "raise SystemExit(3)\n")
    lines, groups = [], []
    log = tmp_path / "logs" / "s.log"

    def seen(line):
        lines.append(line)
        groups.append(interrupt.running_groups())

    proc = run_stage_process(tmp_path, [sys.executable, "-c", script], "s", {"PATH": "/bin"}, log, seen)
    assert proc.returncode == 3
    text = log.read_bytes().decode()  # not read_text: it would turn the carriage returns into newlines
    assert "out line" in text and "e" * 200000 in text and "bar 1%\rbar 50%\rbar 100%" in text
    assert lines[1:] == ["out line", "bar 100%", "group True"] and all(groups) and interrupt.running_groups() == []
    again = run_stage_process(tmp_path, [sys.executable, "-c", "print('second attempt')"], "s", {}, log,
                              lambda line: None, append=True)
    assert again.returncode == 0 and log.read_text().endswith("second attempt\n") and "out line" in log.read_text()


@pytest.mark.parametrize("output, returncode, outcome, exit_status", [
    ("Running stage 'a':\n> cmd\nUpdating lock file 'dvc.lock'\n", 0, "executed", None),
    ("Stage 'a' is cached - skipping run, checking out outputs\n", 0, "restored", None),
    ("Stage 'a' didn't change, skipping\nData and pipelines are up to date.\n", 0, "up-to-date", None),
    ("Running stage 'a':\nERROR: failed to reproduce 'a': failed to run: cmd --x 'exited with 9', exited with 2\n",
     255, "failed", 2),
    ("Running stage 'a':\nERROR: failed to reproduce 'a': failed to run: cmd, exited with 23\n", 255, "failed", 23),
])
def test_what_dvc_did_is_read_from_its_own_lines(output, returncode, outcome, exit_status):
    """Breaks if DVC's messages for executed / run-cache restored / up to date were confused, or if the stage
    command's exit status (2 = bad input, never retried) were read from the command text instead of DVC's end."""
    proc = StageProcess(stage="a", returncode=returncode, output=output)
    assert proc.dvc_outcome == outcome and proc.command_exit == exit_status


def _graph() -> StageGraph:
    """external_inputs (always changed) fingerprints files for `prefs`; prefs -> model; world -> prefs."""
    stages = {
        "external_inputs": StageInfo("external_inputs", "c", (), ("data/external_inputs",), (), always_changed=True),
        "world": StageInfo("world", "c", (), ("data/world",), ()),
        "prefs": StageInfo("prefs", "c", ("data/world", "data/external_inputs/prefs.json"), ("data/prefs",), ()),
        "other": StageInfo("other", "c", ("data/external_inputs/other.json",), ("data/other",), ()),
        "model": StageInfo("model", "c", ("data/prefs",), ("models/m",), ()),
    }
    graph = nx.DiGraph()
    graph.add_nodes_from(stages)
    graph.add_edges_from([("prefs", "world"), ("prefs", "external_inputs"), ("other", "external_inputs"),
                          ("model", "prefs")])
    return StageGraph(stages=stages, graph=graph)


def test_the_up_front_status_decides_what_dvc_is_asked_to_run():
    """Breaks if an always-changed stage made everything below it stale on every run (no run would be a cheap
    no-op), if a changed file behind a param or an upstream change were missed, or if a new param value of the
    fingerprinting stage (a new fingerprint, reported on its consumer) reran every consumer."""
    graph, names = _graph(), ["external_inputs", "world", "prefs", "other", "model"]
    assert plan(graph, {"external_inputs": ["always changed"]}, {}).stale(names) == []
    changed = plan(graph, {"external_inputs": ["always changed"]}, {"prefs": ["prefs.path"]})
    assert changed.stale(names) == ["external_inputs", "prefs", "model"]
    params_only = {"external_inputs": [{"changed deps": {"params.yaml": {"prefs.path": "modified"}}},
                                       "always changed"]}
    assert plan(graph, params_only, {"prefs": ["prefs.path"]}).stale(names) == ["external_inputs", "prefs", "model"]
    code = {"external_inputs": [{"changed deps": {"alignflow/external_inputs.py": "modified"}}, "always changed"]}
    assert plan(graph, code, {}).stale(names) == ["external_inputs", "prefs", "other", "model"]
    upstream = plan(graph, {"world": [{"changed outs": {"data/world": "deleted"}}]}, {})
    assert upstream.stale(names) == ["world", "prefs", "model"] and upstream.upstream["model"] == ["world"]
