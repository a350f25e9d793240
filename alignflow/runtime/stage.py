"""The runtime every DVC stage command shares: params, staged outputs, an MLflow run, clean errors.

A stage module defines `run(ctx)` and ends with `stage_main("name", run, inputs=..., outputs=...)`.
Paths come from dvc.yaml, never from stage code: the stage's `cmd` passes each declared input and
output as `--KEY PATH` (relative to the repository root), exactly the paths its `deps:` and `outs:`
list, and the stage reads them with `ctx.input("KEY")` / `ctx.output("KEY")`. A key ending in `*`
takes several paths (`ctx.inputs("KEY")`), one ending in `?` may be left out. `--stage NAME`
names a templated stage's variant (dvc.yaml `foreach`, addressed as `group@key`).

Outputs are written into staging folders (`.NAME.tmp-PID`) and moved into place only when `run`
returns, so a failed stage leaves no half-written output; the MLflow run is marked FAILED and nothing
is registered.

Identical inputs, identical outputs: DVC-tracked outputs hold only what the code, params and
inputs determine. Facts about the machine and the moment (wall times, tokens/s, speed-ups, thread
counts, host) go through `ctx.write_machine_facts(...)` instead: to the MLflow run, and to the
untracked folder `reports/machine/<stage>/` (git-ignored and dvc-ignored): `facts.json`, with
`stage_seconds`, `torch_threads`, `host` and `cpu_count` added, plus any speed tables or plots the
stage writes into `ctx.machine_dir()`. The folder is staged like an output and replaces the previous
one only when the stage succeeds. `alignflow run`'s table of headline metrics reads `facts.json`
too, so a stage can name a machine fact in `meta.headline`. Gates never read it
(`stopped_by_time_budget`, which decides gates, stays in metrics.json).

Killed stages leave nothing behind for long: at start a stage removes staging folders of its
outputs whose writer PID is dead, and marks its own MLflow runs still RUNNING from a dead process on
this host (tags `alignflow.pid`, `alignflow.host`) as KILLED. `ctx.checkpoint_dir(key)` keys resume
state on the caller's key, the stage's params, the content of its DVC deps and the source of every
project module loaded, so a checkpoint is never resumed under other code or inputs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from alignflow.runtime import launch, tracking
from alignflow.runtime.atomic import remove_dead_temps
from alignflow.runtime.errors import AlignflowError, ParamsError
from alignflow.runtime.params import flatten, load_params, section
from alignflow.runtime.fingerprint import _stage_info, content_digest, loaded_code_digest
from alignflow.runtime.headline import headline_of
from alignflow.runtime.leftovers import HOST_TAG, PID_TAG, mark_dead_runs_killed, remove_stale_outputs
from alignflow.runtime.machine import machine_dir_rel
from alignflow.runtime.paths import checkpoints_dir, repo_root
from alignflow.runtime.stage_paths import StagePaths, parse_stage_args
from pipelines.atomic import replace_dir, write_json_atomic

log = logging.getLogger("alignflow.stage")
BAD_INPUT_EXIT = 2


_MLFLOW_NAME_BAD = re.compile(r"[^0-9A-Za-z_\-. :/]")


def mlflow_metric_name(key: str) -> str:
    """MLflow accepts letters, digits and `_-. :/` in metric names; metrics.json keeps the original key."""
    return _MLFLOW_NAME_BAD.sub("_", str(key))


class StageContext:
    """What a stage needs from the outside world, and nothing more."""

    def __init__(self, name: str, root: Path, params: dict, run: Any | None,
                 args: argparse.Namespace | None = None, paths: "StagePaths | None" = None,
                 scratch: Path | None = None):
        self.name = name
        # a rank other than 0: outputs are staged under this throwaway folder and never committed
        self._scratch = scratch
        self.args = args if args is not None else argparse.Namespace()
        self._paths = paths if paths is not None else StagePaths()
        self.root = root
        self.params = params
        self.profile = str(params.get("profile", "custom"))
        self.seed = int(params.get("seed", 0))
        self._run = run
        self._staged: dict[Path, Path] = {}
        self._artifacts: list[tuple[Path, str]] = []
        self._machine: dict[str, Any] = {}
        self._streamed: set[tuple[str, int]] = set()  # (metric, step) already logged while training ran
        self._resume_base: str | None = None
        self.started = time.time()

    # ---- params -------------------------------------------------------------------------
    def block(self, key: str) -> dict:
        return section(self.params, key)

    def use_seed(self, key: str) -> int:
        """Seed this stage from a dedicated param (e.g. `reward_seed`), so a study can vary it alone."""
        if key not in self.params:
            raise ParamsError(f"params.yaml: missing '{key}'")
        self.seed = int(self.params[key])
        return self.seed

    # ---- paths dvc.yaml hands the stage ---------------------------------------------------
    def input(self, key: str) -> Path:
        """The input passed as `--KEY PATH` (absolute); a key declared optional gives None when left out."""
        return self._paths.one(self, key, self._paths.inputs)

    def inputs(self, key: str) -> list[Path]:
        """The inputs passed as `--KEY PATH [PATH ...]` (a key declared with a trailing `*`)."""
        return self._paths.many(self, key, self._paths.inputs)

    def output_path(self, key: str) -> Path:
        """Where the output `--KEY PATH` lands once the stage succeeds (to name it, not to write into)."""
        return self._paths.one(self, key, self._paths.outputs)

    def output(self, key: str) -> Path:
        """An empty staging folder that becomes the output passed as `--KEY PATH` when the stage succeeds."""
        return self._staging(self.output_path(key))

    # ---- outputs ------------------------------------------------------------------------
    def _staging(self, path: str | Path) -> Path:
        """An empty staging folder that becomes `path` (absolute, or relative to the root) on success."""
        final = (self.root / path).resolve()
        if self._scratch is not None:
            staged = self._scratch / f"{len(self._staged)}-{final.name}"
            staged.mkdir(parents=True)
            self._staged[final] = staged
            return staged
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(final)
        staged = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        self._staged[final] = staged
        return staged

    def checkpoint_dir(self, key: str) -> Path:
        """A resumable scratch folder for this stage, keyed on `key` plus everything else that shapes it.

        The folder name hashes `key` with the stage's params, the content of its DVC deps (upstream
        outputs, data files, code) and the source of every project module loaded so far, so a
        changed param, input or line of code never resumes a checkpoint made under the old one.
        Every rank of a launched stage gets rank 0's folder (call it on every rank).
        """
        if self._resume_base is None:
            self._resume_base = self._resume_digest()
        name = hashlib.sha256(f"{self._resume_base}:{key}".encode()).hexdigest()[:16]
        name = launch.same_on_every_rank(name)  # one folder for all ranks, even if their loaded modules differ
        path = checkpoints_dir(self.root) / self.name / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _resume_digest(self) -> str:
        info = _stage_info(self.root, self.name)
        if info is None:
            params, deps = self.params, {}
        else:
            params = {k: self.params.get(k) for k in sorted(info.params)}
            deps = {dep: content_digest(self.root / dep) for dep in sorted(info.deps)}
        blob = json.dumps({"params": params, "deps": deps, "code": loaded_code_digest()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def write_metrics(self, out_dir: Path, metrics: Mapping[str, Any]) -> None:
        """metrics.json (and headline.json) inside a (cached) output folder, the numeric values to MLflow.

        Only values the code, params and inputs determine belong here: wall times go to `write_machine_facts`.
        """
        write_json_atomic(out_dir / "metrics.json", metrics)
        headline = headline_of(self.root, self.name, metrics)  # what dvc exp show reads
        if headline:
            write_json_atomic(out_dir / "headline.json", headline)
        self.log_metrics(metrics)

    def write_machine_facts(self, facts: Mapping[str, Any]) -> None:
        """Record wall times, speeds, thread counts: to MLflow now, to `reports/machine/<stage>/facts.json` on success.

        Several calls merge. Nothing here reaches a DVC-tracked output, so two runs of the same
        commit and params on different machines still give identical output hashes.
        """
        self._machine.update(facts)
        self.log_metrics(facts)

    @property
    def machine_facts(self) -> dict:
        """What `write_machine_facts` has recorded so far in this run."""
        return dict(self._machine)

    def machine_dir(self) -> Path:
        """A staging folder for machine-dependent files (speed tables and plots): `reports/machine/<stage>/`."""
        final = (self.root / machine_dir_rel(self.name)).resolve()
        return self._staged.get(final) or self._staging(machine_dir_rel(self.name))

    def _stage_machine_facts(self) -> dict:
        """facts.json in the machine folder, with what every stage records about where it ran."""
        facts = {"stage_seconds": round(time.time() - self.started, 2), "host": socket.gethostname(),
                 "cpu_count": os.cpu_count(), "processes": int(os.environ.get("WORLD_SIZE", 1)),
                 "python": platform.python_version(), **self._machine}
        torch = sys.modules.get("torch")
        if torch is not None:
            facts.setdefault("torch_threads", torch.get_num_threads())
            facts.setdefault("torch_version", str(torch.__version__))
        write_json_atomic(self.machine_dir() / "facts.json", facts)
        return facts

    # ---- tracking -----------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        import mlflow

        numeric = {mlflow_metric_name(k): float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
        if numeric:
            mlflow.log_metrics(numeric, step=step)

    def log_history(self, history: list[Mapping[str, Any]], prefix: str) -> None:
        """Per-step training curves as MLflow metric histories (what `stream_history` already sent is skipped)."""
        for row in history:
            self._log_row(row, prefix, synchronous=True)

    def stream_history(self, prefix: str):
        """The training loop's `on_log`: each history row goes to MLflow as it is recorded, not after training.

        Logged without waiting (MLflow's asynchronous logging; the run's end flushes it), so a slow
        tracking server does not slow training; `log_history` at the end adds only what was not sent.
        """
        return lambda row: self._log_row(row, prefix, synchronous=False)

    def _log_row(self, row: Mapping[str, Any], prefix: str, synchronous: bool) -> None:
        if self._run is None:
            return
        import mlflow

        step = int(row.get("step", 0))
        values = flatten({f"{prefix}.{k}": v for k, v in row.items() if k != "step"})
        new = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and (k, step) not in self._streamed}
        if new:
            mlflow.log_metrics({mlflow_metric_name(k): v for k, v in new.items()}, step=step, synchronous=synchronous)
            self._streamed.update((k, step) for k in new)

    def log_dataset(self, path: Path, context: str, name: str | None = None) -> None:
        """Record a JSONL file as an MLflow dataset input (digest = its DVC md5)."""
        if self._run is None or not path.is_file():
            return
        import mlflow
        import pandas as pd

        frame = pd.read_json(path, lines=True)
        dataset = mlflow.data.from_pandas(frame, source=str(path.resolve()),
                                          name=name or path.stem, digest=tracking.file_md5(path)[:16])
        mlflow.log_input(dataset, context=context)

    def log_artifacts_on_success(self, final_dir: str, artifact_path: str) -> None:
        """Log a folder to the run once the stage has moved it into place."""
        self._artifacts.append(((self.root / final_dir).resolve(), artifact_path))

    # ---- lifecycle ----------------------------------------------------------------------
    def _commit_outputs(self) -> dict:
        """Move every staged output into place, machine facts included; returns the facts.

        A rank other than 0 discards what it staged instead and returns its facts unwritten.
        """
        if self._scratch is not None:
            self._discard_outputs()
            return {"stage_seconds": round(time.time() - self.started, 2), **self._machine}
        facts = self._stage_machine_facts()
        for final, staged in self._staged.items():
            replace_dir(staged, final)
        self._staged.clear()
        return facts

    def _discard_outputs(self) -> None:
        for staged in self._staged.values():
            shutil.rmtree(staged, ignore_errors=True)
        self._staged.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _start_run(name: str, root: Path, params: dict, blocks: tuple[str, ...]):
    if os.environ.get("ALIGNFLOW_TRACKING", "on") == "off":
        return None
    import mlflow

    experiment_id = tracking.configure(root)
    mark_dead_runs_killed(mlflow.MlflowClient(), experiment_id, name)
    commit, dirty = tracking.git_commit(root)
    tags = {
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
        "alignflow.stage": name,
        "alignflow.profile": str(params.get("profile", "custom")),
        "alignflow.git_commit": commit,
        "alignflow.git_dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        "alignflow.flow_run_id": os.environ.get(tracking.FLOW_RUN_ENV, ""),
        "alignflow.processes": os.environ.get("WORLD_SIZE", "1"),  # ranks of a launched stage
    }
    parent = os.environ.get(tracking.PARENT_ENV) or None
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent, tags=tags,
                           log_system_metrics=tracking.system_metrics_on())
    # the stage's own blocks, plus every top-level scalar (seed, reward_seed, profile)
    stage_params = {k: v for k, v in params.items() if k in blocks or not isinstance(v, dict)}
    flat = {k: str(v)[:6000] for k, v in flatten(stage_params).items()}
    for start in range(0, len(flat), 100):
        mlflow.log_params(dict(list(flat.items())[start:start + 100]))
    return run


def _record(name: str, **row: str) -> None:
    """Tell the flow's task what happened (its MLflow run, or the one-line error) beyond the exit code."""
    path = os.environ.get(tracking.RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": name, **row}) + "\n")


class Terminated(BaseException):
    """SIGTERM reached the stage (alignflow run was interrupted): unwind so nothing is left half-written."""


def _terminate(signum, _frame) -> None:
    raise Terminated(signum)


def stage_main(name: str, fn: Callable[[StageContext], None], blocks: tuple[str, ...] | None = None, *,
               inputs: Sequence[str] = (), outputs: Sequence[str] = (),
               configure: Callable[[argparse.ArgumentParser], None] | None = None,
               argv: Sequence[str] | None = None) -> None:
    """Entry point of a stage command: run `fn`, commit outputs, close the run, exit non-zero on failure.

    `blocks` names the params blocks logged to MLflow (default: the block named like the stage).
    `inputs`/`outputs` are the path keys dvc.yaml passes as `--KEY PATH` (see the module docstring);
    `configure` adds the stage's own options to the parser (read them from `ctx.args`). A stage whose
    training blocks ask for several processes re-runs itself under torchrun (module docstring).
    """
    paths = StagePaths(inputs, outputs)
    description = sys.modules.get("__main__").__doc__ if argv is None else None
    argv = list(sys.argv[1:] if argv is None else argv)
    name, args = parse_stage_args(name, argv, paths, configure, description=description)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    root = repo_root()
    blocks = blocks or (name.split("@")[0],)
    run = None
    ctx = None
    plan = None
    try:
        params = load_params(root)
        paths.take(args, root, name)
        plan = launch.launch_plan(params, launch.param_keys(root, name, blocks))
        if plan is None:
            rank = launch.join_ranks()
            main = rank is None or rank.is_main
            if main:
                remove_stale_outputs(root, name)
                run = _start_run(name, root, params, blocks)
            scratch = None if main else Path(tempfile.mkdtemp(prefix=f"alignflow-rank{rank.rank}-"))
            ctx = StageContext(name, root, params, run, args=args, paths=paths, scratch=scratch)
            fn(ctx)
            launch.meet_ranks(rank)
            machine = ctx._commit_outputs()
            if run is not None:
                import mlflow

                for folder, artifact_path in ctx._artifacts:
                    mlflow.log_artifacts(str(folder), artifact_path)
                mlflow.log_metric("stage_seconds", machine["stage_seconds"])
                mlflow.log_artifacts(str(ctx.root / machine_dir_rel(name)), "machine")
                mlflow.end_run("FINISHED")
            if run is not None:
                _record(name, run_id=run.info.run_id)
            log.info("done in %.1f s", time.time() - ctx.started)
    except BaseException as exc:  # noqa: BLE001 - every failure must leave nothing half-written
        if ctx is not None:
            ctx._discard_outputs()
        if run is not None:
            import mlflow

            mlflow.set_tag("alignflow.error", f"{type(exc).__name__}: {exc}"[:5000])
            mlflow.end_run("FAILED")
        if isinstance(exc, (AlignflowError, ValueError, FileNotFoundError)):
            # Bad params or data: one clear line and exit 2, which the flow does not retry. A rank
            # hands the line to the parent that launched it, which prints and records it once.
            line, record = f"alignflow stage '{name}' failed: {exc}", f"stage '{name}': {exc}"
            if not launch.report_bad_input(line, record):
                print(line, file=sys.stderr)
                _record(name, error=record)
            sys.exit(BAD_INPUT_EXIT)
        if isinstance(exc, Terminated):
            print(f"alignflow stage '{name}' stopped by SIGTERM; its outputs were not written", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)
        traceback.print_exc()
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        sys.exit(code or 1)
    if plan is not None:
        sys.exit(launch.relaunch(name, plan, fn, argv, record=lambda line: _record(name, error=line)))
