"""The runtime every DVC stage command shares: params, staged outputs, an MLflow run, clean errors.

A stage module defines `run(ctx)` and ends with `stage_main("name", run)`. Outputs are written
into staging folders and moved into place only when `run` returns, so a failed stage leaves no
half-written output; the MLflow run is marked FAILED and nothing is registered.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from alignflow import tracking
from alignflow.atomic import replace_dir, write_json_atomic
from alignflow.errors import AlignflowError, ParamsError
from alignflow.params import flatten, load_params, section
from alignflow.paths import checkpoints_dir, repo_root

log = logging.getLogger("alignflow.stage")
BAD_INPUT_EXIT = 2


_MLFLOW_NAME_BAD = re.compile(r"[^0-9A-Za-z_\-. :/]")


def mlflow_metric_name(key: str) -> str:
    """MLflow accepts letters, digits and `_-. :/` in metric names; metrics.json keeps the original key."""
    return _MLFLOW_NAME_BAD.sub("_", str(key))


class StageContext:
    """What a stage needs from the outside world, and nothing more."""

    def __init__(self, name: str, root: Path, params: dict, run: Any | None):
        self.name = name
        self.root = root
        self.params = params
        self.profile = str(params.get("profile", "custom"))
        self.seed = int(params.get("seed", 0))
        self._run = run
        self._staged: dict[Path, Path] = {}
        self._artifacts: list[tuple[Path, str]] = []
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

    # ---- outputs ------------------------------------------------------------------------
    def output(self, relpath: str) -> Path:
        """An empty staging folder that becomes `relpath` when the stage succeeds."""
        final = (self.root / relpath).resolve()
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        self._staged[final] = staged
        return staged

    def checkpoint_dir(self, key: str) -> Path:
        """A resumable scratch folder for this stage, keyed so a params change never resumes stale state."""
        path = checkpoints_dir(self.root) / self.name / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_metrics(self, out_dir: Path, metrics: Mapping[str, Any]) -> None:
        """metrics.json inside a (cached) output folder, and the numeric values to MLflow."""
        write_json_atomic(out_dir / "metrics.json", metrics)
        self.log_metrics(metrics)

    # ---- tracking -----------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        import mlflow

        numeric = {mlflow_metric_name(k): float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
        if numeric:
            mlflow.log_metrics(numeric, step=step)

    def log_history(self, history: list[Mapping[str, Any]], prefix: str) -> None:
        """Per-step training curves as MLflow metric histories."""
        if self._run is None:
            return
        for row in history:
            step = int(row.get("step", 0))
            values = {f"{prefix}.{k}": v for k, v in row.items() if k != "step"}
            self.log_metrics(values, step=step)

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
    def _commit_outputs(self) -> None:
        for final, staged in self._staged.items():
            replace_dir(staged, final)
        self._staged.clear()

    def _discard_outputs(self) -> None:
        for staged in self._staged.values():
            shutil.rmtree(staged, ignore_errors=True)
        self._staged.clear()


def _start_run(name: str, root: Path, params: dict, blocks: tuple[str, ...]):
    if os.environ.get("ALIGNFLOW_TRACKING", "on") == "off":
        return None
    import mlflow

    experiment_id = tracking.configure(root)
    commit, dirty = tracking.git_commit(root)
    tags = {
        "alignflow.stage": name,
        "alignflow.profile": str(params.get("profile", "custom")),
        "alignflow.git_commit": commit,
        "alignflow.git_dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        "alignflow.flow_run_id": os.environ.get(tracking.FLOW_RUN_ENV, ""),
    }
    parent = os.environ.get(tracking.PARENT_ENV) or None
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent, tags=tags)
    # the stage's own blocks, plus every top-level scalar (seed, reward_seed, profile)
    stage_params = {k: v for k, v in params.items() if k in blocks or not isinstance(v, dict)}
    flat = {k: str(v)[:6000] for k, v in flatten(stage_params).items()}
    for start in range(0, len(flat), 100):
        mlflow.log_params(dict(list(flat.items())[start:start + 100]))
    return run


def _record(name: str, run) -> None:
    path = os.environ.get(tracking.RECORD_ENV)
    if path and run is not None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": name, "run_id": run.info.run_id}) + "\n")


def stage_main(name: str, fn: Callable[[StageContext], None], blocks: tuple[str, ...] | None = None) -> None:
    """Entry point of a stage command: run `fn`, commit outputs, close the run, exit non-zero on failure.

    `blocks` names the params blocks logged to MLflow (default: the block named like the stage).
    """
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    root = repo_root()
    run = None
    ctx = None
    try:
        params = load_params(root)
        run = _start_run(name, root, params, blocks or (name,))
        ctx = StageContext(name, root, params, run)
        fn(ctx)
        ctx._commit_outputs()
        if run is not None:
            import mlflow

            for folder, artifact_path in ctx._artifacts:
                mlflow.log_artifacts(str(folder), artifact_path)
            mlflow.log_metric("stage_seconds", time.time() - ctx.started)
            mlflow.end_run("FINISHED")
        _record(name, run)
        log.info("done in %.1f s", time.time() - ctx.started)
    except BaseException as exc:  # noqa: BLE001 - every failure must leave nothing half-written
        if ctx is not None:
            ctx._discard_outputs()
        if run is not None:
            import mlflow

            mlflow.set_tag("alignflow.error", f"{type(exc).__name__}: {exc}"[:5000])
            mlflow.end_run("FAILED")
        if isinstance(exc, (AlignflowError, ValueError, FileNotFoundError)):
            # Bad params or data: one clear line and exit 2, which the flow does not retry.
            print(f"alignflow stage '{name}' failed: {exc}", file=sys.stderr)
            sys.exit(BAD_INPUT_EXIT)
        traceback.print_exc()
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        sys.exit(code or 1)
