"""`alignflow services up|down|status` and `alignflow deploy`: the team services on this machine.

    alignflow services up [--data-dir DIR] [--remote DIR] [--pool NAME] [--timeout S]
    alignflow services down [--purge]
    alignflow services status [--json]
    alignflow deploy [--name NAME] [--profile P] [--stages S ...] [--pool NAME] [--run [--timeout S]]

`up` starts PostgreSQL, an MLflow server, a Prefect server, a process work pool with a worker (all on
127.0.0.1) and adds a DVC remote on a shared folder; `alignflow run` then tracks to the servers and
pushes to the remote. `deploy --run` triggers a flow run of the deployment and waits for the worker.
"""
from __future__ import annotations

import json
from pathlib import Path

from alignflow.runtime.paths import repo_root


def _cmd_services(args) -> int:
    from alignflow.services import lifecycle

    root = repo_root()
    if args.action == "up":
        lifecycle.up(root, Path(args.data_dir) if args.data_dir else None, Path(args.remote) if args.remote else None,
                     args.pool, args.timeout)
        _print_status(lifecycle.status(root))
        return 0
    if args.action == "down":
        lifecycle.down(root, purge=args.purge)
        return 0
    rows = lifecycle.status(root)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_status(rows)
    return 0 if rows and all(r["running"] for r in rows) else 1


def _print_status(rows: list[dict]) -> None:
    if not rows:
        print("services are not up (embedded defaults: ephemeral Prefect, SQLite MLflow under mlflow/, local DVC "
              "cache); start them with `alignflow services up`")
    for row in rows:
        pid = f"pid {row['pid']}" if row["pid"] else ""
        folder = row["name"] == "dvc-remote"  # a folder, not a process
        shown = ("present" if folder else "running") if row["running"] else ("MISSING" if folder else "STOPPED")
        print(f"{row['name']:<15} {shown:<8} {pid:<11} {row['url'] or ''}")
        if row["log"] and not row["running"]:
            print(f"{'':<15} log: {row['log']}")


def _cmd_deploy(args) -> int:
    from alignflow.services import deploy

    root = repo_root()
    to = deploy.target(root, args.pool)
    name = deploy.deploy(root, args.name or deploy.default_name(root), args.profile, args.stages or None, to)
    print(f"deployment {name} on work pool {to.pool} at {to.api_url} (concurrency limit 1)")
    if not args.run:
        print(f"trigger it with `prefect deployment run {name}` or `alignflow deploy --run`")
        return 0
    flow_run = deploy.run_and_wait(name, args.timeout)
    state = flow_run.state
    print(f"flow run {flow_run.name} ({flow_run.id}): {state.name if state else 'unknown'}"
          + (f": {state.message}" if state and state.message else ""))
    return 0 if state is not None and state.is_completed() else 1


def add_services_parser(sub) -> None:
    svc = sub.add_parser("services", help="team services on 127.0.0.1: PostgreSQL, MLflow and Prefect servers, "
                                          "a work pool and worker, a DVC remote (up | down | status)")
    svc.add_argument("action", choices=["up", "down", "status"])
    svc.add_argument("--data-dir", help="where service data and logs live (default .alignflow/services)")
    svc.add_argument("--remote", help="the shared folder for the DVC remote (default DATA_DIR/dvc-remote)")
    svc.add_argument("--pool", default="alignflow", help="Prefect work pool name (default alignflow)")
    svc.add_argument("--timeout", type=float, default=240, help="seconds each service may take to answer")
    svc.add_argument("--purge", action="store_true", help="down: also delete the data (databases, artifacts, remote)")
    svc.add_argument("--json", action="store_true", help="status as JSON")
    svc.set_defaults(func=_cmd_services)

    dep = sub.add_parser("deploy", help="deploy the pipeline flow on the services' work pool (concurrency 1)")
    dep.add_argument("--name", help="deployment name (default: folder name and a hash of its path)")
    dep.add_argument("--profile", help="profile the deployment renders into params.yaml")
    dep.add_argument("--stages", nargs="+", help="only these stages (and their upstream)")
    dep.add_argument("--pool", help="work pool (default: the services' pool; needed when PREFECT_API_URL names "
                                    "a server started elsewhere)")
    dep.add_argument("--run", action="store_true", help="trigger a flow run and wait for the worker to finish it")
    dep.add_argument("--timeout", type=float, default=3600, help="--run: seconds to wait for the flow run")
    dep.set_defaults(func=_cmd_deploy)
