"""The model registry: every new model version is a `candidate`; `champion` moves only on a passed gate.

A stage declares what it publishes in dvc.yaml under `meta.register`:

    meta:
      register:
        name: policy-sft                 # registered model name
        artifact: model                  # artifact folder the stage logged to its MLflow run
        metrics: models/sft/metrics.json # holds {"gate": {"passed", "metric", "value", "higher_is_better"}}

Registration happens only after DVC has committed the stage (see tasks/), so a failed stage never
registers anything. On top of the stage's own gate, a new champion must not be worse than the
current champion on the gate metric.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from alignflow.errors import AlignflowError

CANDIDATE = "candidate"
CHAMPION = "champion"


@dataclass
class Publication:
    name: str
    version: str
    champion: bool
    reason: str


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _read_gate(metrics_path: Path) -> dict:
    if not metrics_path.is_file():
        raise AlignflowError(f"{metrics_path}: missing; the stage must write its gate there")
    gate = json.loads(metrics_path.read_text(encoding="utf-8")).get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        raise AlignflowError(f"{metrics_path}: no 'gate' block with a 'passed' field")
    return gate


def _better_or_equal(value: float, incumbent: float, higher_is_better: bool) -> bool:
    return value >= incumbent if higher_is_better else value <= incumbent


def publish(root: Path, register: dict, run_id: str, stage: str, lineage_tags: dict[str, str]) -> Publication:
    """Register the run's model artifact as a new version and move the aliases."""
    from mlflow.exceptions import MlflowException

    name = register["name"]
    gate = _read_gate(root / register["metrics"])
    client = _client()
    run = client.get_run(run_id)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Published by the `{stage}` stage of alignflow.")
    metric, value = gate.get("metric", ""), gate.get("value")
    tags = {**lineage_tags, "alignflow.stage": stage, "gate.passed": str(bool(gate["passed"])).lower(),
            "gate.metric": str(metric), "gate.value": str(value)}
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/{register.get('artifact', 'model')}",
                                          run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, CANDIDATE, version.version)

    champion, reason = False, "gate failed: " + str(gate.get("reason", f"{metric}={value}"))
    if gate["passed"]:
        try:
            incumbent = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            incumbent = None
        higher = bool(gate.get("higher_is_better", True))
        old = incumbent.tags.get("gate.value") if incumbent is not None else None
        if incumbent is None or old in (None, "None") or value is None:
            champion, reason = True, "gate passed; first champion"
        elif _better_or_equal(float(value), float(old), higher):
            champion, reason = True, f"gate passed; {metric} {value:.4g} vs champion v{incumbent.version} {float(old):.4g}"
        else:
            reason = f"gate passed but {metric} {value:.4g} is worse than champion v{incumbent.version} ({float(old):.4g})"
    if champion:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_model_version_tag(name, version.version, "alignflow.alias_reason", reason)
    return Publication(name=name, version=str(version.version), champion=champion, reason=reason)


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
    """A local folder holding the model of NAME@ALIAS (in place for a local artifact store)."""
    import mlflow

    version = resolve(ref)
    return mlflow.artifacts.download_artifacts(artifact_uri=version.source)


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
