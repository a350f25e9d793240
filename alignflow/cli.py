"""`alignflow`: run the pipeline, see what is stale, trace lineage, query the registry, schedule runs."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.paths import repo_root


def _cmd_run(args) -> int:
    from alignflow import interrupt, services
    from alignflow.runtime.params import load_params, render_profile
    from alignflow.workspace_lock import workspace_lock

    root = repo_root()
    services.apply_client_env(root)  # the MLflow/Prefect servers of `alignflow services up`, unless set by the user
    with workspace_lock(root, "alignflow " + " ".join(sys.argv[1:] or ["run"]), wait=args.wait):
        # bad params end here, in one line, before Prefect, DVC or params.yaml are touched
        render_profile(root, args.profile) if args.profile else load_params(root)
        interrupt.install()  # covers Prefect's server start-up; the flow installs it again over Prefect's own
        from alignflow import prefect_server

        server = prefect_server.start(root)  # before Prefect is imported: it boots while DVC says what is stale
        try:
            from prefect.task_runners import ThreadPoolTaskRunner

            from flows.pipeline import alignflow_pipeline, format_table, prepare

            prepare(root, args.profile, args.stages)
            if server is not None:
                server.wait_ready()
            pipeline = alignflow_pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.jobs))
            state = pipeline(profile=args.profile, stages=args.stages or None, root=str(root),
                             retries=args.retries, jobs=args.jobs, return_state=True)
        finally:
            if server is not None:
                server.stop()
    if interrupt.requested():
        print("alignflow run interrupted: the running stages were stopped and their previous outputs restored",
              file=sys.stderr)
        return interrupt.exit_code()
    if not state.is_completed():
        from tasks.reproduce import BAD_INPUT_PREFIX

        print(f"alignflow run failed: {state.message}", file=sys.stderr)
        return 2 if (state.message or "").startswith(BAD_INPUT_PREFIX) else 1
    print(format_table(state.result()))
    if args.summary_json:
        from pipelines.atomic import write_json_atomic

        write_json_atomic(args.summary_json, state.result())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number of 1 or more")
    return value


def _cmd_lineage(args) -> int:
    from alignflow.runtime import tracking
    from alignflow.lineage import format_lineage, lineage

    root = repo_root()
    tracking.configure(root)
    item = lineage(root, args.target)
    print(json.dumps(item.as_dict(), indent=2) if args.json else format_lineage(item))
    return 0


def _cmd_registry(args) -> int:
    from alignflow import registry
    from alignflow.runtime import tracking

    tracking.configure(repo_root())
    if args.action == "list":
        rows = registry.list_models()
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in [] if args.json else rows:
            aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())) or "-"
            print(f"{row['name']:<24} latest v{row['latest']:<4} {aliases}")
        if not rows and not args.json:
            print("(no registered models yet: run `alignflow run`)")
    elif args.action == "show":
        if not args.ref:
            raise AlignflowError("registry show needs NAME")
        rows = registry.show(args.ref)
        if args.json:
            print(json.dumps(rows, indent=2))
        for row in [] if args.json else rows:
            print(f"v{row['version']:<4} {','.join(row['aliases']) or '-':<20} gate={row['gate_passed']} "
                  f"{row['gate_metric']}={row['gate_value']} run={row['run_id']} commit={row['git_commit'][:10]}")
            if row["reason"]:
                print(f"      {row['reason']}")
    else:
        if not args.ref:
            raise AlignflowError("registry get needs NAME@ALIAS")
        info = registry.model_info(args.ref)
        print(json.dumps(info, indent=2) if args.json else info["folder"])  # stdout stays one path for scripts
        for key in [] if args.json else ("mlflow", "project"):
            if key in info:
                print(f"# load with {key}: {info[key]}", file=sys.stderr)
    return 0


def _cmd_study(args) -> int:
    from alignflow import study
    from alignflow.workspace_lock import workspace_lock

    root = repo_root()
    spec_path = Path(args.spec) if Path(args.spec).is_absolute() else root / args.spec
    spec = study.load_spec(spec_path)
    with workspace_lock(root, "alignflow " + " ".join(sys.argv[1:] or ["study"]), wait=args.wait):
        return _run_study(args, root, spec)


def _run_study(args, root: Path, spec) -> int:
    import mlflow

    from alignflow import study

    from alignflow.runtime import tracking
    from alignflow.runtime.params import write_params

    if args.profile:
        write_params(root, args.profile)
    experiment_id = tracking.configure(root)
    commit, dirty = tracking.git_commit(root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"study:{spec.name}",
                          tags={"alignflow.kind": "study", "alignflow.study": spec.name,
                                "alignflow.profile": args.profile or "params.yaml", "alignflow.git_commit": commit,
                                "alignflow.git_dirty": str(dirty).lower()}) as parent:
        env = study.study_env(root, parent.info.run_id)
        if not args.collect_only:
            study.run_cells(root, spec, env)
        rows = study.collect(root, spec, env)
        if not rows:
            raise AlignflowError(f"study {spec.name}: no finished cells (run it without --collect-only)")
        summary, claims = study.summarise(spec, rows), study.judge_claims(spec, rows)
        out = root / "reports" / spec.name
        study.write_report(out, spec, rows, summary, claims)
        mlflow.log_artifacts(str(out), "study")
        for i, claim in enumerate(claims):
            if claim["difference"] == claim["difference"]:
                mlflow.log_metric(f"claim_{i}_difference", claim["difference"])
    print(study.markdown(spec, summary, claims, rows))
    for cell in study.cut_cells(rows):
        print(f"warning: study {spec.name}: {cell} stopped at a time budget; rerun that cell", file=sys.stderr)
    print(f"report: {out}")
    return 0


def _cmd_deps(args) -> int:
    from alignflow.code_deps import expected_by_definition, missing_deps, rewrite_dvc_yaml
    from alignflow.runtime.stage_graph import load_stage_graph

    root = repo_root()
    graph = load_stage_graph(root)
    if args.write:
        from pipelines.atomic import write_text_atomic

        path = root / "dvc.yaml"
        text = path.read_text(encoding="utf-8")
        new = rewrite_dvc_yaml(text, expected_by_definition(root, {n: i.cmd for n, i in graph.stages.items()}))
        if new != text:
            write_text_atomic(path, new)
        print(f"dvc.yaml: code deps {'rewritten' if new != text else 'already match the import graph'}")
        return 0
    missing = missing_deps(root, {n: (i.cmd, i.deps) for n, i in graph.stages.items()})
    if args.json:
        print(json.dumps(missing, indent=2))
    for name, files in [] if args.json else missing.items():
        print(f"{name}: imports {', '.join(files)} but dvc.yaml does not list them")
    if missing:
        if not args.json:
            print(f"{len(missing)} of {len(graph.stages)} stages miss code deps: run `alignflow deps --write`",
                  file=sys.stderr)
        return 1
    if not args.json:
        print(f"all {len(graph.stages)} stages list every project module they import")
    return 0


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AlignflowError(f"Prefect server at {url} did not become healthy within {timeout:.0f} s")


def _cmd_serve(args) -> int:
    from flows.pipeline import serve

    root = repo_root()
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        url = f"http://127.0.0.1:{args.port}/api"
        print(f"starting `prefect server start` on 127.0.0.1:{args.port} (UI at http://127.0.0.1:{args.port})")
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(args.port)])
        _wait_healthy(url, 120)
        os.environ["PREFECT_API_URL"] = url
    try:
        serve(args.cron, args.profile, args.stages or None, root, name=args.name)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alignflow")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _default_jobs() -> int:
    from alignflow.stage_process import available_cores

    return available_cores()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"alignflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="reproduce the pipeline through the Prefect flow")
    run.add_argument("--profile", help="render profiles/PROFILE.yaml into params.yaml first (default: use params.yaml)")
    run.add_argument("--stages", nargs="+", help="only these stages (and what they depend on)")
    run.add_argument("--retries", type=int, default=1, help="retries per failed stage (default 1)")
    run.add_argument("--summary-json", metavar="PATH", help="also write what each stage did as JSON")
    run.add_argument("--wait", action="store_true", help="wait for another run in this workspace instead of refusing")
    run.add_argument("--jobs", "-j", type=_positive, default=_default_jobs(),
                     help="stages run at once, each with its share of the cores (default: the cores available, "
                          "%(default)s here); 1 runs them one at a time in topological order")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser("status", help="stale stages and why")
    status.add_argument("--json", action="store_true")
    status.add_argument("--exit-code", action="store_true", help="exit 1 when any stage is stale")
    from alignflow.status_cli import cmd_status

    status.set_defaults(func=cmd_status)

    from alignflow.report_cli import add_report_parser

    add_report_parser(sub)
    lin = sub.add_parser("lineage", help="lineage of an output PATH or a registered NAME@ALIAS")
    lin.add_argument("target")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(func=_cmd_lineage)

    reg = sub.add_parser("registry", help="registered models: list | show NAME | get NAME@ALIAS")
    reg.add_argument("action", choices=["list", "show", "get"])
    reg.add_argument("ref", nargs="?")
    reg.add_argument("--json", action="store_true")
    reg.set_defaults(func=_cmd_registry)

    stu = sub.add_parser("study", help="run a study grid as DVC experiments and judge its claims")
    stu.add_argument("spec", help="study file, e.g. studies/gram.yaml")
    stu.add_argument("--profile", help="render this profile into params.yaml first (e.g. study)")
    stu.add_argument("--collect-only", action="store_true", help="aggregate finished cells without running more")
    stu.add_argument("--wait", action="store_true", help="wait for another run in this workspace instead of refusing")
    stu.set_defaults(func=_cmd_study)

    deps = sub.add_parser("deps", help="check (or --write) each stage's code deps against its imports")
    deps.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml from the import graph")
    deps.add_argument("--json", action="store_true")
    deps.set_defaults(func=_cmd_deps)

    srv = sub.add_parser("serve", help="a scheduled Prefect deployment of the pipeline")
    srv.add_argument("--cron", required=True, help="cron expression, e.g. '0 3 * * *'")
    srv.add_argument("--profile")
    srv.add_argument("--stages", nargs="+")
    srv.add_argument("--name", default="scheduled", help="deployment name")
    srv.add_argument("--port", type=int, default=4200, help="port for a server started here when PREFECT_API_URL is unset")
    srv.set_defaults(func=_cmd_serve)

    from alignflow.lisa_cli import add_lisa_parser

    add_lisa_parser(sub)
    from alignflow.lrhp_cli import add_lrhp_parser

    add_lrhp_parser(sub)
    from alignflow.results_cli import add_results_parser

    add_results_parser(sub)
    from alignflow.services_cli import add_services_parser

    add_services_parser(sub)
    return parser


def use_workspace_code() -> None:
    """Import `pipelines`, `stages`, `tasks` and `flows` from the workspace (the folder holding dvc.yaml).

    They are not installed (pyproject.toml says why): the code a run executes is the code DVC hashes.
    """
    try:
        root = str(repo_root())
    except AlignflowError:
        return  # outside a workspace; commands that need one say so
    if root not in sys.path[:1]:
        sys.path.insert(0, root)


# commands that read or write tracking / the Prefect API (`run` applies it itself, before its lock)
_USE_SERVICES = ("lineage", "registry", "study", "serve", "report")


def main(argv: list[str] | None = None) -> int:
    from alignflow import use_this_interpreter

    use_this_interpreter()
    use_workspace_code()
    args = build_parser().parse_args(argv)
    try:
        if args.command in _USE_SERVICES:
            from alignflow import services

            services.apply_client_env(repo_root())  # the servers of `alignflow services up`, unless set by the user
        return args.func(args)
    except AlignflowError as exc:
        print(f"alignflow: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


def entry_point() -> None:
    """The `alignflow` command: `main`, then an exit that skips tearing down thousands of modules.

    After a run, the interpreter's own shutdown (freeing Prefect, MLflow, DVC, pandas, ... module by
    module) took 1.5-3 s on a 2-core machine: most of what was left of a no-op run once its work was
    done. The exit handlers (Prefect's and MLflow's flushes, logging's shutdown) still run, and the
    standard streams are flushed; then the process exits at once with `main`'s code. `main` itself is
    for in-process callers (tests) and returns normally.
    """
    import atexit

    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BrokenPipeError:  # the reader went away (`alignflow status --json | head`): no traceback, like git
        code = 128 + 13  # SIGPIPE's status, as a shell reports it
    atexit._run_exitfuncs()  # what a normal exit runs first (CPython's own function)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`alignflow ... | head`)
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    entry_point()
