"""One Prefect task per DVC stage: DVC decides whether the stage is stale and runs it, in a subprocess.

The task runs `dvc --wait-for-lock repro --single-item STAGE` with the stage's own environment (the
MLflow parent run, a run record file, the flow run, its share of the cores: `alignflow/stage_process.py`),
so stages of independent branches can run at once. The stage's output goes line by line to the task's
log (the Prefect UI shows a failure's traceback) and to `reports/logs/<stage>.log`, which is logged as
an artifact of the stage's MLflow run. The task learns from the run record whether the stage executed
(rather than being up to date or restored from DVC's run-cache), then tags the run with the DVC md5s of
its inputs and outputs and shows its metrics as a Prefect artifact (and each `comparison.md` it wrote as a
markdown artifact with its MLflow run named). Whatever the stage's status, a stage
with `meta.register` is reconciled with the registry (`registry.reconcile_stage`): publishing is part
of the stage's success, so a publish failure fails the task, and the retry (the stage is then up to
date) publishes from the committed outputs. A failed stage gets its previous outputs back.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from prefect.states import Failed

from alignflow import interrupt, registry

from alignflow.runtime.stage import BAD_INPUT_EXIT
from alignflow.runtime.stage_graph import StageInfo
from alignflow.stage_process import StageProcess, log_path, repro_command, run_stage_process, stage_env
from alignflow.stage_results import headline, lineage_tags

BAD_INPUT_PREFIX = "bad input: "


@dataclass
class StageOutcome:
    stage: str
    status: str  # executed | restored | up-to-date | checked | failed | not run
    seconds: float
    run_id: str | None = None
    metrics: dict = field(default_factory=dict)
    published: dict | None = None


class StageFailed(RuntimeError):
    """The stage's `dvc repro` failed; the message holds DVC's error line and the output's last lines."""

    def __init__(self, proc: StageProcess):
        super().__init__(proc.error_summary())
        self.stage = proc.stage
        self.command_exit = proc.command_exit


def _read_record(path: Path, stage: str, key: str = "run_id") -> str | None:
    """What the stage command wrote to its record: its MLflow run id, or the one-line error it failed with."""
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("stage") == stage and row.get(key):
            return row[key]
    return None


def _restore_outputs(root: Path, stage: str, env: dict, logger) -> None:
    """DVC deletes a stage's outputs before running it; put the last committed version back."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "--wait-for-lock", "checkout", "--force", stage], cwd=root,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode == 0:
        logger.warning("stage %s failed; restored its previous outputs from the DVC cache", stage)
    else:  # nothing to restore (first run): the failure still stands
        logger.warning("stage %s failed and its previous outputs could not be restored: %s", stage,
                       (proc.stderr or proc.stdout).strip()[-500:])


_EXIT_STATUS = re.compile(r"exited with (-?\d+)")


def _exit_code(exc: BaseException | None) -> int | None:
    """The stage command's exit status: a StageFailed's own, else from DVC's error chain."""
    while exc is not None:
        if getattr(exc, "command_exit", None) is not None:
            return exc.command_exit
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

def _attempt() -> int:
    """1 for a task's first run, 2 for its first retry (0 outside a Prefect task run)."""
    from prefect.runtime import task_run

    return int(task_run.run_count or 0)


def _stage_run_of(stage: str, parent_run_id: str | None) -> str | None:
    """The MLflow run a failed stage opened under this flow's parent run (its record names successes only)."""
    if not parent_run_id:
        return None
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], max_results=1, order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`alignflow.stage` = '{stage}' and "
                                            f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return runs[0].info.run_id if runs else None


def _log_stage_log(run_id: str | None, log_file: Path, logger) -> None:
    """The stage's log as an artifact of its MLflow run (`logs/<stage>.log`): where its metrics are."""
    if not run_id or not log_file.is_file():
        return
    from mlflow import MlflowClient

    try:
        MlflowClient().log_artifact(run_id, str(log_file), "logs")
    except Exception as exc:  # noqa: BLE001 - the stage's outcome stands; the log stays in reports/logs
        logger.warning("could not log %s to MLflow run %s: %s", log_file, run_id, exc)


@task(name="reproduce-stage", task_run_name="{info.name}", retries=1, retry_delay_seconds=2,
      retry_condition_fn=_retry_unless_bad_input, cache_policy=NO_CACHE)
def reproduce_stage(root: str, info: StageInfo, parent_run_id: str | None, flow_run_id: str | None,
                    threads: int | None = None) -> dict:
    """Run the stage through DVC (with `threads` OMP/MKL threads when given); its outcome as a dict."""
    logger = get_run_logger()
    root_path = Path(root)
    started = time.time()
    log_file = log_path(root_path, info.name)
    with tempfile.TemporaryDirectory() as scratch:
        record = Path(scratch) / "runs.jsonl"
        env = stage_env(os.environ, parent_run_id=parent_run_id, record=record, flow_run_id=flow_run_id,
                        threads=threads)
        proc = run_stage_process(root_path, repro_command(info.name), info.name, env, log_file, logger.info,
                                 append=_attempt() > 1)
        run_id = _read_record(record, info.name)
        error = _read_record(record, info.name, "error")
    if proc.returncode != 0:  # Ctrl-C / SIGTERM too (alignflow/interrupt.py): the previous outputs come back
        _restore_outputs(root_path, info.name, env, logger)
        _log_stage_log(run_id or _stage_run_of(info.name, parent_run_id), log_file, logger)
        if error and proc.command_exit == BAD_INPUT_EXIT:
            # bad input: the stage's own line, no traceback, no retry (see the flow)
            return Failed(message=f"{BAD_INPUT_PREFIX}{error}")
        raise StageFailed(proc)
    if info.always_changed:
        status = "checked"  # runs on every repro by design (external_inputs); nothing to track
    elif run_id or proc.dvc_outcome == "executed":
        status = "executed"
    else:
        status = "restored" if proc.dvc_outcome == "restored" else "up-to-date"
    _log_stage_log(run_id, log_file, logger)
    outcome = finish_outcome(root_path, info, status, time.time() - started, run_id, parent_run_id, logger)
    rows = [{"metric": k, "value": v} for k, v in outcome["metrics"].items()]
    create_table_artifact(key=f"{artifact_key(info.name)}-metrics", table=rows or [{"metric": "-", "value": "-"}],
                          description=f"Stage `{info.name}` ({status}) metrics from its metrics.json")
    if status == "executed":
        publish_reports(root_path, info, run_id)
    return outcome


def publish_reports(root: Path, info: StageInfo, run_id: str | None) -> list[str]:
    """Each `comparison.md` in the stage's outputs as a Prefect markdown artifact; the keys created.

    The page ends with where the same report lives in MLflow: a link when the tracking server is
    HTTP, else the run id (a local store has no address a browser could follow).
    """
    keys = []
    for out in info.outs:
        for page in sorted((root / out).rglob("comparison.md")) if (root / out).is_dir() else []:
            folder = page.parent.relative_to(root / out)
            key = f"{artifact_key(info.name)}-{'report' if folder == Path('.') else artifact_key(folder.as_posix())}"
            text = page.read_text(encoding="utf-8") + "\n" + _mlflow_run_line(run_id, page.relative_to(root).as_posix())
            key = key.strip("-")[:100]
            create_markdown_artifact(markdown=text, key=key,
                                     description=f"`{page.relative_to(root).as_posix()}` of stage `{info.name}`")
            keys.append(key)
    return keys


def _mlflow_run_line(run_id: str | None, path: str) -> str:
    if not run_id:
        return f"*`{path}`; no MLflow run recorded.*\n"
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        from mlflow import MlflowClient

        experiment = MlflowClient().get_run(run_id).info.experiment_id
        return f"*`{path}`: MLflow run [{run_id}]({uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}).*\n"
    return f"*`{path}`: MLflow run `{run_id}` (`mlflow ui --backend-store-uri {uri}`).*\n"


def finish_outcome(root: Path, info: StageInfo, status: str, seconds: float, run_id: str | None,
                   parent_run_id: str | None, logger) -> dict:
    """Lineage tags on the stage's run, the registry reconciled, the headline metrics read: its outcome."""
    outcome = StageOutcome(stage=info.name, status=status, seconds=round(seconds, 2), run_id=run_id,
                           metrics=headline(root, info))
    if run_id:
        from mlflow import MlflowClient

        client = MlflowClient()
        for key, value in lineage_tags(root, info.name).items():
            client.set_tag(run_id, key, value)
    if info.registry:  # a publish failure propagates: the task fails and is retried
        pub = registry.reconcile_stage(root, info, run_id, parent_run_id)
        if pub is not None:
            outcome.published = asdict(pub)
            logger.info("registered %s v%s (champion=%s: %s)", pub.name, pub.version, pub.champion, pub.reason)
    logger.info("stage %s: %s in %.1f s", info.name, status, outcome.seconds)
    return asdict(outcome)


@task(name="record-fresh-stages", task_run_name="fresh stages ({n})", retries=1, retry_delay_seconds=2,
      cache_policy=NO_CACHE)
def record_fresh_stages(root: str, infos: list[StageInfo], parent_run_id: str | None, n: int = 0) -> list[dict]:
    """The stages DVC's up-front status found fresh: no DVC subprocess; each still reconciled with the registry.

    One task run for all of them, not one per stage: on a no-op run (every stage fresh) a task run per
    stage was most of the flow's own time, for records that say "up to date" 36 times.
    """
    logger = get_run_logger()
    return [finish_outcome(Path(root), info, "checked" if info.always_changed else "up-to-date", 0.0, None,
                           parent_run_id, logger) for info in infos]
