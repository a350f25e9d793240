"""Warm start: one stage through `dvc repro`, its command forked from the warm server vs started cold.

Not a test: it prints numbers measured in one run on this machine. Each repeat forces the stage to
run again (`dvc repro -f --single-item STAGE`, one thread, as `alignflow run --jobs 2` on 2 cores
gives each stage), once cold and once handed to a warm server started for this benchmark, the two
alternating so machine noise hits both alike. Printed: the median wall seconds of each and their
ratio (cold / warm), and whether every run left the same output md5 in dvc.lock (it must).

Needs a workspace where the stage's inputs exist (after `make smoke` or `make run`):

    python -m benchmarks.warm_start --workspace . --stage rm_compare --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from alignflow import warm_server
from alignflow.runtime.stage_graph import read_lock
from alignflow.stage_process import stage_env
from alignflow.warm_start import SOCKET_ENV
from benchmarks.machine import cpu_model


def run_once(root: Path, stage: str, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "-f", "--single-item", stage],
                          cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro {stage} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def outputs_md5(root: Path, stage: str) -> tuple:
    return tuple(sorted((o["path"], o.get("md5")) for o in read_lock(root).get(stage, {}).get("outs", [])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, default=Path("."))
    ap.add_argument("--stage", default="rm_compare", help="a stage whose inputs exist in the workspace")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    root = args.workspace.resolve()
    base = stage_env(os.environ, parent_run_id=None, record="", flow_run_id=None, threads=1)
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"  # `python` in the command
    base.pop(SOCKET_ENV, None)
    cold, warm, md5s = [], [], set()
    with warm_server.running(root, base, warm_server.START_MIN_STAGES) as path:
        log = root / warm_server.LOG_FILE
        deadline = time.time() + 120
        while "listening" not in (log.read_text() if log.is_file() else "") and time.time() < deadline:
            time.sleep(0.2)
        for _ in range(args.repeats):
            cold.append(run_once(root, args.stage, base))
            md5s.add(outputs_md5(root, args.stage))
            warm.append(run_once(root, args.stage, {**base, SOCKET_ENV: str(path)}))
            md5s.add(outputs_md5(root, args.stage))
        served = log.read_text().count("): pid")
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"CPU: {cpu_model()}; stage {args.stage}, {args.repeats} repeats each, one thread")
    print(f"cold: median {c:.2f} s  (runs: {', '.join(f'{s:.2f}' for s in cold)})")
    print(f"warm: median {w:.2f} s  (runs: {', '.join(f'{s:.2f}' for s in warm)}); served warm: {served} of {args.repeats}")
    print(f"cold / warm: x{c / w:.2f}; outputs identical across all runs: {len(md5s) == 1}")


if __name__ == "__main__":
    main()
