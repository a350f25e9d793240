"""One Prefect task per DVC stage: DVC decides whether the stage is stale and runs it.

The task passes the MLflow parent run to the stage command through the environment, learns from
the stage's run record whether it executed (rather than being up to date or restored from DVC's
run-cache), then tags the run with the DVC md5s of its inputs and outputs and shows its metrics as a
Prefect artifact. Whatever the stage's status, a stage with `meta.register` is reconciled with the
registry (`registry.reconcile_stage`): publishing is part of the stage's success, so a publish
failure fails the task, and the retry (the stage is then up to date) publishes from the committed
outputs.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_table_artifact

from prefect.states import Failed

from alignflow import interrupt, registry

from alignflow.runtime import tracking
from alignflow.runtime.stage import BAD_INPUT_EXIT
from alignflow.runtime.stage_graph import StageInfo
from alignflow.stage_results import headline, lineage_tags

BAD_INPUT_PREFIX = "bad input: "


@dataclass
class StageOutcome:
    stage: str
    status: str  # executed | restored | up-to-date | checked
    seconds: float
    run_id: str | None = None
    metrics: dict = field(default_factory=dict)
    published: dict | None = None


@contextmanager
def _env(**values: str | None):
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read_record(path: Path, stage: str, key: str = "run_id") -> str | None:
    """What the stage command wrote to its record: its MLflow run id, or the one-line error it failed with."""
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("stage") == stage and row.get(key):
            return row[key]
    return None


def _restore_outputs(repo, stage: str, logger) -> None:
    """DVC deletes a stage's outputs before running it; put the last committed version back."""
    try:
        repo.checkout(targets=[stage], force=True)
        logger.warning("stage %s failed; restored its previous outputs from the DVC cache", stage)
    except Exception as exc:  # noqa: BLE001 - nothing to restore (first run): the failure still stands
        logger.warning("stage %s failed and its previous outputs could not be restored: %s", stage, exc)


_EXIT_STATUS = re.compile(r"exited with (-?\d+)")


def _exit_code(exc: BaseException | None) -> int | None:
    """The stage command's exit status, from DVC's error chain."""
    while exc is not None:
        found = _EXIT_STATUS.findall(str(exc))
        if found:
            return int(found[-1])
        exc = exc.__cause__ or exc.__context__
    return None


def _retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry crashes and flaky failures, not a stage that rejected its input (exit status exactly 2) nor one
    that was stopped by Ctrl-C / SIGTERM."""
    if interrupt.requested() or (getattr(state, "message", None) or "").startswith(BAD_INPUT_PREFIX):
        return False
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return _exit_code(exc) != BAD_INPUT_EXIT  # DVC wraps the command's failure: read down the chain
    return True



def artifact_key(stage: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for a stage name such as `ppo@ppo_bt`."""
    return re.sub(r"[^a-z0-9-]+", "-", stage.lower())

@task(name="reproduce-stage", task_run_name="{info.name}", retries=1, retry_delay_seconds=2,
      retry_condition_fn=_retry_unless_bad_input, cache_policy=NO_CACHE)
def reproduce_stage(root: str, info: StageInfo, parent_run_id: str | None, flow_run_id: str | None) -> dict:
    from dvc.repo import Repo

    logger = get_run_logger()
    root_path = Path(root)
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        record = Path(scratch) / "runs.jsonl"
        with _env(**{tracking.PARENT_ENV: parent_run_id, tracking.RECORD_ENV: str(record),
                     tracking.FLOW_RUN_ENV: flow_run_id}):
            with Repo(root) as repo:
                try:
                    changed = repo.reproduce(info.name, single_item=True)
                except BaseException as exc:  # Ctrl-C too: the stage's previous outputs come back
                    _restore_outputs(repo, info.name, logger)
                    error = _read_record(record, info.name, "error")
                    if error and _exit_code(exc) == BAD_INPUT_EXIT:
                        # bad input: the stage's own line, no traceback, no retry (see the flow)
                        return Failed(message=f"{BAD_INPUT_PREFIX}{error}")
                    raise
        run_id = _read_record(record, info.name)
    if run_id:
        status = "executed"
    elif info.always_changed:
        status = "checked"  # runs on every repro by design (external_inputs); nothing to track
    else:
        status = "restored" if changed else "up-to-date"
    outcome = StageOutcome(stage=info.name, status=status, seconds=round(time.time() - started, 2), run_id=run_id,
                           metrics=headline(root_path, info))
    if run_id:
        from mlflow import MlflowClient

        client = MlflowClient()
        for key, value in lineage_tags(root_path, info.name).items():
            client.set_tag(run_id, key, value)
    if info.registry:  # a publish failure propagates: the task fails and is retried
        pub = registry.reconcile_stage(root_path, info, run_id, parent_run_id)
        if pub is not None:
            outcome.published = asdict(pub)
            logger.info("registered %s v%s (champion=%s: %s)", pub.name, pub.version, pub.champion, pub.reason)
    logger.info("stage %s: %s in %.1f s", info.name, status, outcome.seconds)
    rows = [{"metric": k, "value": v} for k, v in outcome.metrics.items()]
    create_table_artifact(key=f"{artifact_key(info.name)}-metrics", table=rows or [{"metric": "-", "value": "-"}],
                          description=f"Stage `{info.name}` ({status}) metrics from its metrics.json")
    return asdict(outcome)
