"""PostgreSQL from the Debian package: a private cluster for the MLflow and Prefect databases.

`initdb` and `pg_ctl` refuse to run as root, so as root the cluster belongs to the `postgres` system
user and lives in its home (a root-owned temp or home folder is not reachable by that user); as any
other user it lives in the services data folder. The cluster listens on 127.0.0.1 only, with no Unix
socket, and a password (scram-sha-256) kept in `postgres.json` beside the other service data.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.services import processes
from alignflow.services.state import Service, write_json_private

USER = "alignflow"
DATABASES = ("mlflow", "prefect")
MIN_VERSION = (14, 9)  # Prefect's server needs at least this
SYSTEM_USER = "postgres"


@dataclass
class Cluster:
    path: str  # holds data/ (the cluster) and server.log
    password: str

    @property
    def data(self) -> Path:
        return Path(self.path) / "data"

    @property
    def log(self) -> Path:
        return Path(self.path) / "server.log"

    def url(self, port: int, database: str, driver: str) -> str:
        """A SQLAlchemy URL; name the driver (SQLAlchemy 2.1's bare `postgresql://` means psycopg 3)."""
        return f"{driver}://{USER}:{self.password}@127.0.0.1:{port}/{database}"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps initdb/pg_ctl off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise AlignflowError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); "
                             "install the postgresql package")
    return Path(initdb).parent


def check_version(bin_path: Path) -> None:
    out = subprocess.run([str(bin_path / "postgres"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if not match or (int(match[1]), int(match[2])) < MIN_VERSION:
        raise AlignflowError(f"PostgreSQL {out.strip() or '?'} found; the Prefect server needs "
                             f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _cluster_home(data_dir: Path) -> Path:
    if os.geteuid() != 0:
        return data_dir / "postgres"
    home = Path(pwd.getpwnam(SYSTEM_USER).pw_dir)
    key = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return home / "alignflow" / key


def ensure_cluster(data_dir: Path) -> Cluster:
    """The cluster recorded in `data_dir/postgres.json`, created (initdb) on first use."""
    record = data_dir / "postgres.json"
    if record.is_file():
        cluster = Cluster(**json.loads(record.read_text(encoding="utf-8")))
        if (cluster.data / "PG_VERSION").is_file():
            return cluster
    bin_path = bin_dir()
    check_version(bin_path)
    cluster = Cluster(path=str(_cluster_home(data_dir)), password=secrets.token_urlsafe(18))
    home = Path(cluster.path)
    shutil.rmtree(home, ignore_errors=True)  # a half-made cluster from an interrupted first `up`
    home.mkdir(parents=True, mode=0o700)
    pwfile = home / "pwfile"
    pwfile.write_text(cluster.password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SYSTEM_USER)
        for path in (home.parent, home, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    try:
        done = subprocess.run(_as_owner([str(bin_path / "initdb"), "-D", str(cluster.data), "-U", USER,
                                         "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-locale", "-E", "UTF8"]),
                              capture_output=True, text=True)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise AlignflowError(f"initdb failed for {cluster.data}:\n{(done.stdout + done.stderr)[-2000:]}")
    with open(cluster.data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# alignflow services: loopback only, no Unix socket (the port is given at start)\n"
                   "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\nshared_buffers = 32MB\n")
    write_json_private(record, {"path": cluster.path, "password": cluster.password})
    return cluster


def start(cluster: Cluster, port: int, timeout: float) -> Service:
    """`pg_ctl start` on `port`, waiting until the server accepts connections (then `create_databases`)."""
    cmd = [str(bin_dir() / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", str(int(timeout)),
           "-o", f"-p {port}", "start"]
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        # pg_ctl -w gives up waiting but leaves a slow postmaster running: stop it, so nothing is left behind
        subprocess.run(_as_owner([cmd[0], "-D", str(cluster.data), "-m", "immediate", "stop"]), capture_output=True)
        raise processes.ServiceError(f"postgresql did not start on 127.0.0.1:{port}; see {cluster.log}:\n"
                                     f"{(done.stdout + done.stderr).strip()}\n{processes.log_tail(cluster.log)}")
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    service = Service(name="postgresql", log=str(cluster.log), pid=pid, start_ticks=processes.start_ticks(pid),
                      port=port, url=f"postgresql://{USER}@127.0.0.1:{port}", data=cluster.path)
    return service


def create_databases(cluster: Cluster, port: int) -> None:
    """One database for MLflow, one for Prefect (with pg_trgm, which Prefect's migrations need)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=cluster.password, dbname="postgres",
                            connect_timeout=10)
    conn.autocommit = True
    with conn.cursor() as cur:  # no `with conn`: that opens a transaction, and CREATE DATABASE refuses one
        for name in DATABASES:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=cluster.password, dbname="prefect",
                            connect_timeout=10)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    conn.close()


def stop(service: Service) -> bool:
    """`pg_ctl stop -m fast` when the recorded postmaster still runs; False otherwise."""
    if not processes.is_running(service):
        return False
    data = Path(service.data) / "data"
    done = subprocess.run(_as_owner([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                          capture_output=True, text=True)
    if done.returncode != 0 and processes.is_running(service):
        os.kill(service.pid, signal.SIGINT)  # pg_ctl could not: a fast shutdown of the postmaster we started
    return True


def remove_cluster(data_dir: Path) -> None:
    """Delete the cluster (for `down --purge`); the record goes with the data folder."""
    record = data_dir / "postgres.json"
    if record.is_file():
        cluster = Path(json.loads(record.read_text(encoding="utf-8"))["path"])
        shutil.rmtree(cluster, ignore_errors=True)
        try:
            cluster.parent.rmdir()  # as root: ~postgres/alignflow, once no workspace has a cluster there
        except OSError:
            pass
