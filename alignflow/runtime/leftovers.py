"""What a killed stage process leaves behind, and how the next run clears it.

Staging folders of dead writers are removed and MLflow runs still RUNNING from a dead process on this
host are marked KILLED, so a SIGKILL never leaves half-written outputs or phantom runs for long.
"""
from __future__ import annotations

import logging
import socket
from pathlib import Path

from alignflow.runtime.atomic import remove_dead_temps
from pipelines.atomic import pid_alive
from alignflow.runtime.fingerprint import _stage_info

log = logging.getLogger("alignflow.stage")
PID_TAG, HOST_TAG = "alignflow.pid", "alignflow.host"


def remove_stale_outputs(root: Path, name: str) -> list[Path]:
    """Staging and moved-aside folders of this stage's outputs left by processes that have died."""
    info = _stage_info(root, name)
    found: list[Path] = []
    for out in info.outs if info is not None else ():
        found += remove_dead_temps((root / out).resolve())
    for path in found:
        log.warning("removed %s, left by a stage process that no longer runs", path)
    return found


def mark_dead_runs_killed(client, experiment_id: str, name: str) -> list[str]:
    """Close this stage's MLflow runs still RUNNING whose process (tag pid, this host) has died: status KILLED."""
    host = socket.gethostname()
    runs = client.search_runs([experiment_id], filter_string=f"tags.`alignflow.stage` = '{name}' "
                                                             "and attributes.status = 'RUNNING'")
    killed = []
    for run in runs:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "alignflow.error", f"process {pid} on {host} ended without closing the run")
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("marked MLflow run %s of %s KILLED: its process %s is gone", run.info.run_id, name, pid)
        killed.append(run.info.run_id)
    return killed
