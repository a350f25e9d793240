"""One stage through DVC in a subprocess of its own: its environment, its log, what DVC did.

`alignflow run` runs stages concurrently, so a stage cannot borrow the flow's process state: each
`dvc --wait-for-lock repro --single-item STAGE` gets its own `env=` (the MLflow parent run, the run
record file, the Prefect flow run, its share of the cores) and its own process group, so an
interrupt can stop exactly the stage processes (`alignflow/interrupt.py`). `--wait-for-lock` makes
concurrent repros queue for DVC's repository lock (taken while a stage is planned and committed,
released while its command runs) instead of failing after a few seconds.

The stage's stdout and stderr come through one pipe (stderr merged: two pipes read one after the
other can deadlock once the unread one fills), are written as they come to the stage's log file
(`reports/logs/<stage>.log`, untracked), and each line is handed to a callback (the Prefect task's
logger). A progress bar redraws itself with carriage returns: the callback gets the last state of
such a line, the log file every byte.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from alignflow import interrupt

from alignflow.runtime import tracking

LOG_DIR = "reports/logs"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# what `dvc repro` prints for each outcome of one stage (DVC 3.x console messages)
_EXECUTED = re.compile(r"^Running stage '(?P<stage>[^']+)':", re.M)
_RESTORED = re.compile(r"^Stage '(?P<stage>[^']+)' is cached - skipping run", re.M)
_UP_TO_DATE = re.compile(r"^Stage '(?P<stage>[^']+)' didn't change, skipping", re.M)
_ERROR_LINE = re.compile(r"^ERROR: .*$", re.M)
_EXITED = re.compile(r"exited with (-?\d+)")


def log_path(root: Path, stage: str) -> Path:
    """The stage's log file of the latest run (a stage name such as `ppo@ppo_bt` is a valid file name)."""
    return Path(root) / LOG_DIR / f"{stage}.log"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, as a container or `taskset` sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_share(cores: int, concurrent: int) -> int:
    """Threads for one of `concurrent` stages running at once on `cores` cores: never below one."""
    return max(1, cores // max(1, concurrent))


def stage_env(base: Mapping[str, str], *, parent_run_id: str | None, record: Path | str,
              flow_run_id: str | None, threads: int | None) -> dict[str, str]:
    """The environment of one stage's DVC subprocess: a copy of `base`, never `os.environ` itself.

    The run record file and the MLflow parent run tell the stage where to report (see
    alignflow/runtime/tracking.py); `threads` sets OMP/MKL threads (torch reads them at start)
    unless the user set them in `base` explicitly.
    """
    env = dict(base)
    for key, value in ((tracking.PARENT_ENV, parent_run_id), (tracking.FLOW_RUN_ENV, flow_run_id),
                       (tracking.RECORD_ENV, str(record))):
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    if threads is not None:
        for key in THREAD_VARS:
            if key not in base:
                env[key] = str(threads)
    return env


def repro_command(stage: str) -> list[str]:
    """DVC's own CLI, from this interpreter, reproducing this one stage when it is stale."""
    return [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]


@dataclass
class StageProcess:
    stage: str
    returncode: int
    output: str  # the whole merged output (what the log file holds for this attempt)

    @property
    def dvc_outcome(self) -> str:
        """executed | restored | up-to-date | failed | unknown, from DVC's own lines about this stage."""
        if self.returncode != 0:
            return "failed"
        for pattern, outcome in ((_EXECUTED, "executed"), (_RESTORED, "restored"), (_UP_TO_DATE, "up-to-date")):
            if any(m["stage"] == self.stage for m in pattern.finditer(self.output)):
                return outcome
        return "unknown"

    @property
    def command_exit(self) -> int | None:
        """The stage command's exit status, from DVC's ERROR line (DVC itself exits 255 for any failure)."""
        for line in reversed(_ERROR_LINE.findall(self.output)):
            found = _EXITED.findall(line)
            if found:
                return int(found[-1])
        return None

    def shown_lines(self) -> list[str]:
        """The output as a terminal would leave it: progress bars at their last state, blank lines dropped."""
        shown = (_last_redraw(line.encode("utf-8")) for line in self.output.split("\n"))
        return [line for line in shown if line]

    def error_summary(self, lines: int = 15) -> str:
        """`stage S failed (exit N): <its last line>`, then the output's last lines (DVC's ERROR line last).

        A stage's last line before DVC's own error is what it died of (the exception under a traceback).
        """
        shown = self.shown_lines()
        said = [line for line in shown if not line.startswith("ERROR: ")]
        code = self.command_exit if self.command_exit is not None else self.returncode
        first = f"stage {self.stage} failed (exit {code})" + (f": {said[-1].strip()}" if said else "")
        return "\n".join([first, *shown[-lines:]])


def _last_redraw(raw: bytes) -> str:
    """What a terminal would show of a line that redraws itself with carriage returns."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    parts = [p for p in text.split("\r") if p.strip()]
    return parts[-1] if parts else ""


def run_stage_process(root: Path, command: list[str], stage: str, env: Mapping[str, str], log_file: Path,
                      on_line: Callable[[str], None], append: bool = False) -> StageProcess:
    """Run `command` in `root` in a new process group; tee its merged output to `log_file` and `on_line`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[bytes] = []
    with open(log_file, "ab" if append else "wb") as log:
        proc = subprocess.Popen(command, cwd=root, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        with interrupt.tracked(proc.pid):
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                chunks.append(raw)
                line = _last_redraw(raw)
                if line:
                    on_line(line)
            proc.stdout.close()
            returncode = proc.wait()
    output = b"".join(chunks).decode("utf-8", errors="replace")
    return StageProcess(stage=stage, returncode=returncode, output=output)
