"""Where a dataset or model came from and where it goes.

For a path: the stage that produced it (from dvc.yaml), the params and input md5s DVC recorded
(dvc.lock), the MLflow run whose outputs carry the same md5 (and so its git commit), and the
stages downstream. For NAME@ALIAS: the registered version's run, then the same for its stage.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.params import flatten
from alignflow.runtime.stage_graph import load_stage_graph, read_lock


@dataclass
class Lineage:
    target: str
    path: str
    stage: str
    command: str
    output_md5: str
    params: dict
    inputs: list[dict]
    mlflow_run: dict | None
    consumers: list[str]
    downstream: list[str]
    model_version: dict | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _find_run(stage: str, out_path: str, md5: str) -> dict | None:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments or not md5:
        return None
    runs = client.search_runs(experiments, filter_string=f"tags.`dvc.out.{out_path}` = '{md5}' and "
                                                         f"tags.`alignflow.stage` = '{stage}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    run = runs[0]
    tags = run.data.tags
    return {"run_id": run.info.run_id, "status": run.info.status, "experiment_id": run.info.experiment_id,
            "parent_run_id": tags.get("mlflow.parentRunId", ""), "git_commit": tags.get("alignflow.git_commit", ""),
            "git_dirty": tags.get("alignflow.git_dirty", ""), "profile": tags.get("alignflow.profile", ""),
            "flow_run_id": tags.get("alignflow.flow_run_id", "")}


def _from_registry(ref: str) -> tuple[str, dict]:
    from mlflow import MlflowClient

    from alignflow import registry

    version = registry.resolve(ref)
    run = MlflowClient().get_run(version.run_id)
    stage = run.data.tags.get("alignflow.stage")
    outs = [k[len("dvc.out."):] for k in run.data.tags if k.startswith("dvc.out.")]
    if not stage or not outs:
        raise AlignflowError(f"{ref}: its run {version.run_id} has no alignflow stage/output tags")
    info = {"name": version.name, "version": version.version, "run_id": version.run_id, "source": version.source,
            "output_md5": {o: run.data.tags[f"dvc.out.{o}"] for o in outs}}
    return outs[0], info


def lineage(root: Path, target: str) -> Lineage:
    model_version = None
    path = target
    if "@" in target and not (root / target).exists():
        path, model_version = _from_registry(target)
    graph = load_stage_graph(root)
    rel = Path(path)
    if rel.is_absolute():
        try:
            rel = rel.resolve().relative_to(root.resolve())
        except ValueError as exc:
            raise AlignflowError(f"{path}: outside the project at {root}") from exc
    rel_str = rel.as_posix().rstrip("/")
    info = graph.producer_of(rel_str)
    if info is None:
        consumers = graph.consumers_of(rel_str)
        if consumers:
            raise AlignflowError(f"{rel_str}: not produced by any stage (a source input of: {', '.join(consumers)})")
        raise AlignflowError(f"{rel_str}: no stage in dvc.yaml produces or uses it")
    entry = read_lock(root).get(info.name)
    notes = []
    if entry is None:
        raise AlignflowError(f"{rel_str}: stage '{info.name}' has never been run (no dvc.lock entry); run `alignflow run`")
    out = next((o for o in entry.get("outs", []) if rel_str == o["path"] or rel_str.startswith(o["path"] + "/")), None)
    out_path, md5 = (out["path"], out.get("md5", "")) if out else (rel_str, "")
    params = {}
    for file_params in (entry.get("params") or {}).values():
        params.update(flatten(file_params))
    inputs = [{"path": d["path"], "md5": d.get("md5", "")} for d in entry.get("deps", [])]
    run = _find_run(info.name, out_path, md5)
    if run is None:
        notes.append("no MLflow run carries this output's md5 (produced outside `alignflow run`, or the store was reset)")
    if model_version and model_version["output_md5"].get(out_path) not in (None, md5):
        notes.append("the workspace now holds a different version of this output than the registered model")
    return Lineage(target=target, path=out_path, stage=info.name, command=info.cmd, output_md5=md5, params=params,
                   inputs=inputs, mlflow_run=run, consumers=graph.direct_consumers(info.name),
                   downstream=graph.downstream(info.name), model_version=model_version, notes=notes)


def format_lineage(item: Lineage) -> str:
    lines = [f"{item.target}"]
    if item.model_version:
        mv = item.model_version
        lines.append(f"  registered model: {mv['name']} v{mv['version']} (run {mv['run_id']})")
    lines += [f"  output:        {item.path}  md5 {item.output_md5}",
              f"  produced by:   stage '{item.stage}'  ({item.command})",
              "  params:"]
    lines += [f"    {k} = {v}" for k, v in sorted(item.params.items())] or ["    (none)"]
    lines.append("  inputs:")
    lines += [f"    {d['path']}  md5 {d['md5']}" for d in item.inputs]
    if item.mlflow_run:
        r = item.mlflow_run
        dirty = " (uncommitted changes)" if r["git_dirty"] == "true" else ""
        lines += [f"  git commit:    {r['git_commit']}{dirty}",
                  f"  mlflow run:    {r['run_id']} [{r['status']}] experiment {r['experiment_id']}"
                  + (f", parent {r['parent_run_id']}" if r["parent_run_id"] else ""),
                  f"  profile:       {r['profile']}"]
    lines.append(f"  consumers:     {', '.join(item.consumers) or '(none)'}")
    lines.append(f"  downstream:    {', '.join(item.downstream) or '(none)'}")
    lines += [f"  note: {n}" for n in item.notes]
    return "\n".join(lines)
