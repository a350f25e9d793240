"""A Prefect process work pool and one worker polling it.

A deployment on the pool runs each flow run as a subprocess of a worker; on a cluster every machine
runs `prefect worker start --pool NAME` against the same server (docs/cluster.md). The worker here
runs in its own session, so `services down` stops it and any flow run it started.
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.services import processes
from alignflow.services.state import Service

DEFAULT_POOL = "alignflow"


def client_env(env: dict[str, str], api_url: str, home: Path) -> dict[str, str]:
    return {**env, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home.resolve())}


def create_pool(name: str, env: dict[str, str], cwd: Path) -> None:
    """`prefect work-pool create NAME --type process` (the CLI fills the process job template)."""
    done = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", name, "--type", "process",
                           "--overwrite"], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AlignflowError(f"prefect work-pool create {name} failed:\n{(done.stdout + done.stderr)[-2000:]}")


def online_workers(api_url: str, pool: str) -> list[str]:
    """Names of the pool's workers the server sees as ONLINE (recent heartbeat)."""
    request = urllib.request.Request(f"{api_url}/work_pools/{pool}/workers/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        rows = json.loads(resp.read())
    return [row["name"] for row in rows if row.get("status") == "ONLINE"]


def launch_worker(pool: str, data_dir: Path, env: dict[str, str]) -> Service:
    """Start `prefect worker start --pool POOL`; `worker_ready` tells when the server sees it."""
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
           "--name", f"{pool}-worker-local"]
    service = processes.start("prefect-worker", cmd, data_dir / "logs" / "prefect-worker.log",
                              {**env, "PREFECT_WORKER_QUERY_SECONDS": "5"}, data_dir, url=f"pool {pool}")
    return service


def worker_ready(api_url: str, pool: str):
    return lambda: bool(online_workers(api_url, pool))
