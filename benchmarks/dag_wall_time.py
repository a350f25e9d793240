"""Whole-DAG wall time of `alignflow run`: `--jobs 1` against `--jobs 2` (or any list), and the no-op run.

Not a test: it prints numbers measured in one run on this machine. For each profile and each jobs
value, a fresh `git clone` of this checkout's HEAD (empty DVC cache, its own MLflow store and Prefect
home) runs the whole DAG once, timed from the command's start to its exit, Prefect's temporary
server included; the ratio is against the first jobs value, measured in the same invocation. The
no-op time is the median of `--noop-repeats` further runs of the last clone with nothing changed
(what a second `alignflow run` costs: start-up, DVC's status of every stage, the Prefect flow run
and the MLflow parent run). Uncommitted changes are not in a clone: commit first.

    python -m benchmarks.dag_wall_time --profiles smoke default --jobs 1 2 --json reports/bench/dag.json
    python -m benchmarks.dag_wall_time --profiles smoke --stages world prefs --noop-repeats 1   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
NOOP_TARGET_S = 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "default"])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2], help="the first is the baseline of the ratio")
    parser.add_argument("--stages", nargs="+", help="only these stages and their upstream (a quick check)")
    parser.add_argument("--noop-repeats", type=int, default=3)
    parser.add_argument("--source", default=str(REPO), help="the repository to clone (default: this checkout)")
    parser.add_argument("--workdir", help="keep the clones here (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def clean_env(home: Path) -> dict[str, str]:
    """This environment without Prefect / MLflow / alignflow settings: each clone gets its own stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "ALIGNFLOW_"))}
    env.update(PREFECT_HOME=str(home / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return env


def timed_run(clone: Path, env: dict, args: list[str], log: Path) -> float:
    """Seconds of one `alignflow run ARGS` in `clone`; its output goes to `log`; a failure stops the benchmark."""
    started = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "alignflow.cli", "run", *args], cwd=clone, env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"`alignflow run {' '.join(args)}` failed in {clone} (exit {proc.returncode}); see {log}")
    return seconds


_STAGE_LINE = re.compile(r"^\[\d+/\d+\] (?P<stage>\S+) (?P<status>executed|restored|up-to-date|checked) "
                         r"(?P<seconds>[\d.]+)s", re.M)


def stage_seconds(log_text: str) -> dict[str, float]:
    """Seconds per executed stage, from the flow's `[k/N] stage status seconds` lines of the last run in the log."""
    found: dict[str, float] = {}
    for match in _STAGE_LINE.finditer(log_text):
        if match["status"] == "executed":
            found[match["stage"]] = float(match["seconds"])
    return found


def fresh_clone(source: str, dst: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", source, str(dst)], check=True)
    return dst


def main() -> None:
    args = parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dag-wall-time-"))
    work.mkdir(parents=True, exist_ok=True)
    targets = ["--stages", *args.stages] if args.stages else []
    results = {"cpu": cpu_model(), "cores": os.cpu_count(), "stages": args.stages or "all", "runs": []}
    print(f"CPU: {results['cpu']} ({results['cores']} cores); stages: {results['stages']}", flush=True)
    try:
        for profile in args.profiles:
            baseline = None
            for jobs in args.jobs:
                name = f"{profile}-jobs{jobs}"
                clone = fresh_clone(args.source, work / name / "alignflow")
                env = clean_env(work / name)
                log = work / name / "run.log"
                seconds = timed_run(clone, env, ["--profile", profile, "--jobs", str(jobs), *targets], log)
                baseline = baseline or seconds
                stages = stage_seconds(log.read_text(errors="replace"))
                row = {"profile": profile, "jobs": jobs, "seconds": round(seconds, 2),
                       "speedup_vs_first": round(baseline / seconds, 3), "stage_seconds": stages}
                results["runs"].append(row)
                print(f"{profile:<8} --jobs {jobs:<3} {seconds:8.1f} s   x{row['speedup_vs_first']:.2f} "
                      f"vs --jobs {args.jobs[0]}; stage seconds summed {sum(stages.values()):.1f}", flush=True)
                longest = sorted(stages.items(), key=lambda kv: -kv[1])[:8]
                print("         longest stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in longest), flush=True)
            if args.noop_repeats:
                noop = [timed_run(clone, env, ["--jobs", str(jobs), *targets], log) for _ in range(args.noop_repeats)]
                median = statistics.median(noop)
                results.setdefault("noop", []).append({"profile": profile, "jobs": jobs, "median_s": round(median, 2),
                                                       "runs_s": [round(s, 2) for s in noop]})
                verdict = "met" if median <= NOOP_TARGET_S else "NOT met"
                print(f"{profile:<8} no-op    {median:8.1f} s   median of {len(noop)} "
                      f"({', '.join(f'{s:.1f}' for s in noop)}); target <= {NOOP_TARGET_S:.0f} s {verdict}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
