"""The services state file: what `services up` started (pids, ports, URLs, logs, data folders).

It lives at `.alignflow/services.json` in the workspace (git-ignored), readable by the owner only
because it holds the database password. `down` reads it to stop exactly these processes; `client_env`
reads it to point runs at the servers. Anything that persists across up/down (the PostgreSQL cluster
and its password) lives in the data folder instead (`postgres.json` there).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alignflow.runtime.errors import AlignflowError

STATE_FILE = ".alignflow/services.json"


@dataclass
class Service:
    """One started process (or the PostgreSQL cluster, which `pg_ctl` owns)."""

    name: str
    log: str
    pid: int | None = None
    start_ticks: int | None = None  # /proc/<pid>/stat start time: a reused pid is never mistaken for ours
    port: int | None = None
    url: str | None = None
    data: str | None = None  # the service's own data folder, where `down` needs it (the PostgreSQL cluster)


@dataclass
class ServicesState:
    data_dir: str
    pool: str
    remote_name: str | None = None
    remote_path: str | None = None
    services: dict[str, Service] = field(default_factory=dict)

    def url(self, name: str) -> str | None:
        service = self.services.get(name)
        return service.url if service else None


def state_path(root: Path) -> Path:
    return Path(root) / STATE_FILE


def write_json_private(path: Path, obj) -> None:
    """Atomically write `obj` as JSON readable by the owner only (it may hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(root: Path, state: ServicesState) -> None:
    write_json_private(state_path(root), asdict(state))


def load_state(root: Path) -> ServicesState | None:
    """The recorded services, or None when `services up` has not run (or `down` removed them)."""
    path = state_path(root)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        services = {name: Service(**value) for name, value in raw.pop("services", {}).items()}
        return ServicesState(**raw, services=services)
    except (ValueError, TypeError) as exc:
        raise AlignflowError(f"{path}: unreadable services state ({exc}); stop the services by hand and "
                             "delete the file") from exc


def clear_state(root: Path) -> None:
    state_path(root).unlink(missing_ok=True)
