"""The model registry: every new model version is a `candidate`; `champion` moves only on a passed gate.

A stage declares what it publishes in dvc.yaml under `meta.register`:

    meta:
      register:
        name: policy-sft                 # registered model name
        artifact: model                  # artifact folder the stage logged to its MLflow run
        metrics: models/sft/metrics.json # holds the `gate` block (see alignflow/runtime/gates.py)

Publishing is part of a stage's success and the registry never falls behind the workspace: each
version carries the DVC md5 of the stage's committed outputs (`dvc.out.<path>` tags), and after every
reproduce the task calls `reconcile_stage`, which publishes whenever no version of the model carries
the current md5 -- from the stage's run if it executed, else (restored from DVC's run-cache, or an
earlier publish failed) from a new `reconcile` run that logs the committed folder. Registration
happens only after DVC has committed the stage, so a failed stage never registers anything. The gate
is recomputed from the committed metrics.json with today's rules (`gates.recompute`), and who takes
`champion` is decided by `gates.champion_decision` (comparable incumbents only; ties go to the newer).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from alignflow.runtime import flavours, gates, tracking
from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.stage_graph import StageInfo
from alignflow.stage_results import lineage_tags

CANDIDATE = "candidate"
CHAMPION = "champion"
OUT_TAG = "dvc.out."
RECONCILE_KIND = "reconcile"
DECISION_TAG = "alignflow.decision.champion"
DECISION_REASON_TAG = "alignflow.decision.reason"
REASON_TAG = "alignflow.alias_reason"  # written last: its absence marks a publish cut short


@dataclass
class Publication:
    name: str
    version: str
    champion: bool
    reason: str


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _read_metrics(metrics_path: Path) -> dict:
    if not metrics_path.is_file():
        raise AlignflowError(f"{metrics_path}: missing; the stage must write its gate there")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    gate = metrics.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        raise AlignflowError(f"{metrics_path}: no 'gate' block with a 'passed' field")
    return metrics


def _tag_value(value) -> str:
    """A gate value as a tag that reads back to the same float (repr round-trips exactly)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def _parse_value(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _gate_tags(gate: dict) -> dict[str, str]:
    return {"gate.passed": str(bool(gate["passed"])).lower(), "gate.metric": str(gate.get("metric", "")),
            "gate.value": _tag_value(gate.get("value")), "gate.higher_is_better": str(bool(gate["higher_is_better"])).lower(),
            "gate.threshold": _tag_value(gate.get("threshold")), "gate.profile": str(gate.get("profile")),
            "gate.eval_set": str(gate.get("eval_set")),
            "gate.stopped_by_time_budget": str(gate.get("stopped_by_time_budget")).lower(),
            "gate.reason": str(gate.get("reason", ""))[:5000]}


def _incumbent_gate(version) -> dict:
    """The champion's gate as its version's tags recorded it (absent tags read as None)."""
    tags = version.tags or {}
    higher = tags.get("gate.higher_is_better")
    return {"version": str(version.version), "metric": tags.get("gate.metric"),
            "value": _parse_value(tags.get("gate.value")),
            "higher_is_better": None if higher is None else higher == "true",
            "profile": tags.get("gate.profile"), "eval_set": tags.get("gate.eval_set")}


def publish(root: Path, register: dict, run_id: str, stage: str, lineage: dict[str, str]) -> Publication:
    """Register the run's model artifact as a new version and move the aliases.

    The champion decision is stored on the version when it is created and `alignflow.alias_reason`
    is written only after the aliases moved, so a publish cut short half-way is finished by the
    next `reconcile_stage` exactly as it was decided.
    """
    from mlflow.exceptions import MlflowException

    name = register["name"]
    metrics = _read_metrics(root / register["metrics"])
    gate = gates.recompute(metrics["gate"], metrics)
    client = _client()
    run = client.get_run(run_id)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Published by the `{stage}` stage of alignflow.")
    try:
        incumbent = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        incumbent = None
    champion, reason = gates.champion_decision(gate, None if incumbent is None else _incumbent_gate(incumbent))
    tags = {**lineage, "alignflow.stage": stage, **_gate_tags(gate),
            DECISION_TAG: str(champion).lower(), DECISION_REASON_TAG: reason[:5000]}
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/{register.get('artifact', 'model')}",
                                          run_id=run_id, tags=tags)
    return _apply_decision(name, str(version.version), champion, reason)


def _apply_decision(name: str, version: str, champion: bool, reason: str) -> Publication:
    """Move the aliases as decided, then mark the publication complete."""
    client = _client()
    client.set_registered_model_alias(name, CANDIDATE, version)
    if champion:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, REASON_TAG, reason)
    return Publication(name=name, version=version, champion=champion, reason=reason)


def _output_tags(root: Path, stage: str) -> dict[str, str]:
    return {k: v for k, v in lineage_tags(root, stage).items() if k.startswith(OUT_TAG)}


def version_for_outputs(name: str, outputs: dict[str, str]):
    """The newest version of `name` whose `dvc.out.*` tags equal `outputs`, or None."""
    if not outputs:
        return None
    versions = sorted(_client().search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    for version in versions:
        if all((version.tags or {}).get(key) == md5 for key, md5 in outputs.items()):
            return version
    return None


def _reconcile_run(root: Path, stage: str, register: dict, lineage: dict[str, str], parent_run_id: str | None) -> str:
    """A FINISHED run holding the committed model folder and metrics.json, to register from."""
    metrics_path = root / register["metrics"]
    folder = metrics_path.parent / register.get("artifact", "model")
    if not folder.is_dir():
        raise AlignflowError(f"{folder}: missing; cannot publish `{stage}` from its committed outputs")
    client = _client()
    if parent_run_id:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    else:
        experiment_id = tracking.configure(root)
    commit, dirty = tracking.git_commit(root)
    metrics = _read_metrics(metrics_path)
    tags = {**lineage, "alignflow.kind": RECONCILE_KIND, "alignflow.stage": stage,
            "alignflow.profile": str(metrics["gate"].get("profile") or gates.UNKNOWN),
            "alignflow.git_commit": commit, "alignflow.git_dirty": str(dirty).lower()}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=f"{stage} (reconcile)", tags=tags)
    try:
        if register.get("flavour"):  # the same MLflow model the stage itself logs (alignflow/runtime/flavours)
            flavours.log(folder, str(register["flavour"]), register.get("artifact", "model"), run_id=run.info.run_id)
        else:
            client.log_artifacts(run.info.run_id, str(folder), register.get("artifact", "model"))
        client.log_artifact(run.info.run_id, str(metrics_path))
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def reconcile_stage(root: Path, info: StageInfo, run_id: str | None,
                    parent_run_id: str | None = None) -> Publication | None:
    """Publish the stage's committed model unless a version already carries its output md5s.

    `run_id`: the stage's MLflow run when it executed in this reproduce, else None (restored from
    DVC's run-cache, or up to date): then a `reconcile` run logs the committed folder. Returns None
    when there is nothing to publish (no `meta.register`, no committed outputs, or already published);
    an already published version gets `candidate` back, since `candidate` names the workspace's model
    (after a revert DVC restores older outputs, whose version is already registered).
    Any failure propagates, so the task fails and its retry reconciles again.
    """
    register = info.registry
    if not register:
        return None
    outputs = _output_tags(root, info.name)
    if not outputs:
        return None
    found = version_for_outputs(register["name"], outputs)
    if found is not None:
        if REASON_TAG not in (found.tags or {}):
            tags = found.tags or {}  # an earlier publish stopped half-way: finish it as it was decided
            return _apply_decision(register["name"], str(found.version), tags.get(DECISION_TAG) == "true",
                                   tags.get(DECISION_REASON_TAG, ""))
        _client().set_registered_model_alias(register["name"], CANDIDATE, found.version)
        return None
    lineage = lineage_tags(root, info.name)
    if run_id is None:
        run_id = _reconcile_run(root, info.name, register, lineage, parent_run_id)
        commit = tracking.git_commit(root)[0]
    else:
        commit = _client().get_run(run_id).data.tags.get("alignflow.git_commit", "")
    return publish(root, register, run_id, info.name, {**lineage, "alignflow.git_commit": commit})


def parse_ref(ref: str) -> tuple[str, str]:
    if "@" not in ref:
        raise AlignflowError(f"'{ref}': expected NAME@ALIAS (e.g. policy-sft@champion)")
    name, alias = ref.split("@", 1)
    return name, alias


def resolve(ref: str):
    """The model version behind NAME@ALIAS."""
    from mlflow.exceptions import MlflowException

    name, alias = parse_ref(ref)
    try:
        return _client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise AlignflowError(f"no model version for {ref}: {exc.message if hasattr(exc, 'message') else exc}") from exc


def local_path(ref: str) -> str:
    """A local folder holding the model of NAME@ALIAS in the project's own format (in place for a local
    artifact store): the folder inside the MLflow model, or the whole artifact of a bare-folder version."""
    return model_info(ref)["folder"]


def model_info(ref: str) -> dict:
    """NAME@ALIAS as a user loads it: its version, MLflow URI and flavour, the project-format folder,
    and the loading calls (MLflow's and the project's own, which differ per model family)."""
    import mlflow

    version = resolve(ref)
    uri = f"models:/{ref}"
    described = flavours.describe(Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source)))
    calls = {key: described[key].format(uri=uri) for key in ("mlflow", "project") if described[key]}
    return {"ref": ref, "version": str(version.version), "uri": uri, "flavour": described["flavour"],
            "folder": described["folder"], **calls}


def list_models() -> list[dict]:
    rows = []
    for model in _client().search_registered_models():
        rows.append({"name": model.name, "aliases": dict(model.aliases or {}),
                     "latest": max((int(v.version) for v in model.latest_versions), default=0)})
    return sorted(rows, key=lambda r: r["name"])


def show(name: str) -> list[dict]:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise AlignflowError(f"no registered model named '{name}'") from exc
    by_version: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name='{name}'"):
        rows.append({"version": int(v.version), "aliases": sorted(by_version.get(str(v.version), [])),
                     "run_id": v.run_id, "gate_passed": v.tags.get("gate.passed"),
                     "gate_metric": v.tags.get("gate.metric"), "gate_value": v.tags.get("gate.value"),
                     "git_commit": v.tags.get("alignflow.git_commit", ""), "reason": v.tags.get("alignflow.alias_reason", "")})
    return sorted(rows, key=lambda r: r["version"])
