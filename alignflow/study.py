"""Studies: a grid of param overrides run as DVC experiments, then aggregated into a claims table.

Each grid cell is one `dvc exp run --temp` in a temporary workspace, so every cell is a versioned,
cached pipeline run (`dvc exp show` lists them) and stages the overrides do not touch are restored
from DVC's run-cache instead of recomputed. Cells that already exist are skipped, so an interrupted
study resumes. Seeds are the unit of replication: for each claim and each setting of the other grid
keys, the per-seed differences get a t-interval, and the claim is called reproduced only when the
whole 95% interval is on its side. This module runs the cells and reads/writes the files; the statistics,
the report text and the figure are computed from plain values in `pipelines/evaluation/studies.py`.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.params import flatten
from pipelines.evaluation import studies
from pipelines.evaluation.studies import Claim

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
RESERVED_NAMES = {"machine"}  # reports/machine/ holds the stages' machine facts
SPEC_KEYS = {"name", "description", "grid", "seed_key", "targets", "models", "metrics", "claims"}
CUT = "cut_by_time_budget"  # cell column: models of the cell stopped at a time budget (";"-joined)


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    grid: dict[str, list]
    seed_key: str
    targets: list[str]
    models: dict[str, str]  # label -> metrics.json path
    metrics: list[str]
    claims: list[Claim]

    @property
    def group_keys(self) -> list[str]:
        return studies.group_keys(self.grid, self.seed_key)


def _side(raw, where: str) -> tuple[str, str]:
    if not isinstance(raw, dict) or set(raw) != {"model", "metric"}:
        raise ParamsError(f"{where}: expected {{model: ..., metric: ...}}, got {raw!r}")
    return str(raw["model"]), str(raw["metric"])


def _effect(raw: dict, where: str) -> float | None:
    value = raw.get("effect")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
        raise ParamsError(f"{where}.effect: a non-zero number (the difference worth detecting), got {value!r}")
    return float(value)


def load_spec(path: Path) -> StudySpec:
    """Read and check a study file; every problem names the file and the key."""
    if not path.is_file():
        raise ParamsError(f"{path}: study file not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise ParamsError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "grid", "seed_key", "models", "metrics"):
        if key not in data:
            raise ParamsError(f"{path}: missing '{key}'")
    if not SAFE_NAME.fullmatch(str(data["name"])) or str(data["name"]) in RESERVED_NAMES:
        # the name becomes reports/<name>/ and git refs: nothing that could climb out of reports/
        raise ParamsError(f"{path}: name {str(data['name'])!r} must be letters, digits, '_', '-' or '.', "
                          f"start with a letter or digit, and not be {', '.join(sorted(RESERVED_NAMES))}")
    grid = data["grid"]
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ParamsError(f"{path}: 'grid' must map param keys to non-empty lists")
    if data["seed_key"] not in grid:
        raise ParamsError(f"{path}: seed_key '{data['seed_key']}' is not a grid key")
    models = {str(k): str(v) for k, v in data["models"].items()}
    claims = []
    for i, raw in enumerate(data.get("claims") or []):
        where = f"{path}: claims[{i}]"
        claim = Claim(name=str(raw.get("name", f"claim {i}")), better=_side(raw.get("better"), f"{where}.better"),
                      worse=_side(raw.get("worse"), f"{where}.worse"),
                      lower_is_better=bool(raw.get("lower_is_better", False)), effect=_effect(raw, where))
        for label, _ in (claim.better, claim.worse):
            if label not in models:
                raise ParamsError(f"{where}: model '{label}' is not in 'models'")
        claims.append(claim)
    return StudySpec(name=str(data["name"]), description=str(data.get("description", "")), grid=dict(grid),
                     seed_key=str(data["seed_key"]), targets=list(data.get("targets") or []), models=models,
                     metrics=list(data["metrics"]), claims=claims)


def cells(spec: StudySpec) -> list[dict]:
    keys = list(spec.grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]


def cell_name(spec: StudySpec, cell: dict) -> str:
    """A git-ref-safe experiment name, e.g. gram-reward_seed1-prefs_limit250."""
    parts = [f"{k.replace('.', '_')}{v}" for k, v in cell.items()]
    return "-".join([spec.name, *parts]).replace("/", "_").replace(" ", "")


def _dvc(root: Path, env: dict, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, text=True,
                          capture_output=capture)


def _experiments(root: Path, env: dict) -> dict[str, dict]:
    """name -> {"rev": commit, "params": params.yaml data} for every experiment of the baseline."""
    proc = _dvc(root, env, "exp", "show", "--json", "--no-pager", capture=True)
    if proc.returncode != 0:
        raise ParamsError(f"dvc exp show failed: {proc.stderr.strip()[-2000:]}")
    found = {}
    for baseline in json.loads(proc.stdout or "[]"):
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                if rev.get("name"):
                    found[rev["name"]] = {
                        "rev": rev.get("rev"),
                        "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {},
                    }
    return found


def _experiment_metrics(root: Path, revs: list[str], paths: list[str]) -> dict[str, dict[str, dict]]:
    """rev -> {path: metrics} for any JSON files of the experiments' outputs.

    `dvc exp show` lists only the files dvc.yaml declares as metrics (each stage's short headline.json);
    a study reads the full metrics.json of its models, which `dvc metrics show` reads from any commit.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        shown = repo.metrics.show(targets=paths, revs=revs, hide_workspace=True)
    return {rev: {path: (entry or {}).get("data") or {} for path, entry in ((result or {}).get("data") or {}).items()}
            for rev, result in shown.items()}


def run_cells(root: Path, spec: StudySpec, env: dict, log=print) -> list[str]:
    """Run every missing cell as `dvc exp run --temp`; returns the names that ran."""
    existing = _experiments(root, env)
    ran = []
    todo = cells(spec)
    for i, cell in enumerate(todo, 1):
        name = cell_name(spec, cell)
        if name in existing:
            log(f"[{i}/{len(todo)}] {name}: exists, skipped")
            continue
        log(f"[{i}/{len(todo)}] {name}: running")
        overrides = [arg for k, v in cell.items() for arg in ("-S", f"{k}={json.dumps(v)}")]
        proc = _dvc(root, env, "exp", "run", "--temp", "-n", name, *overrides, *spec.targets)
        if proc.returncode != 0:
            raise ParamsError(f"study cell {name} failed (dvc exp run exited {proc.returncode})")
        ran.append(name)
    return ran


def _lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def collect(root: Path, spec: StudySpec, env: dict) -> list[dict]:
    """One row per finished cell: its grid values and the study metrics of each model."""
    found = _experiments(root, env)
    names = [cell_name(spec, cell) for cell in cells(spec)]
    wanted = [found[name]["rev"] for name in names if name in found and found[name]["rev"]]
    metrics = _experiment_metrics(root, wanted, sorted(set(spec.models.values()))) if wanted else {}
    rows = []
    for cell in cells(spec):
        exp = found.get(cell_name(spec, cell))
        if exp is None:
            continue
        row = {"cell": cell_name(spec, cell), **cell}
        cut = []
        for label, path in spec.models.items():
            data = flatten(metrics.get(exp["rev"], {}).get(path, {}))
            for metric in spec.metrics:
                row[f"{label}|{metric}"] = data.get(metric)
            if data.get("stopped_by_time_budget") is True:
                cut.append(label)
        row[CUT] = ";".join(cut)  # models that trained fewer steps than set: the cell measured something else
        if any(row[f"{label}|{metric}"] is not None for label in spec.models for metric in spec.metrics):
            rows.append(row)  # a cell still running (or failed) has no metrics yet
    return rows


def summarise(spec: StudySpec, rows: list[dict]) -> list[dict]:
    """Mean and 95% t-interval across seeds of every model metric, per setting of the other grid keys."""
    return studies.summarise(rows, spec.group_keys, list(spec.models), spec.metrics)


def judge_claims(spec: StudySpec, rows: list[dict]) -> list[dict]:
    """Per claim and setting: the per-seed difference and a verdict (pipelines/evaluation/studies.py)."""
    return studies.judge_claims(rows, spec.group_keys, spec.claims)


def cut_cells(rows: list[dict]) -> list[str]:
    """`cell (models)` for every cell whose models stopped at a time budget before their set steps."""
    return [f"{row['cell']} ({row[CUT].replace(';', ', ')})" for row in rows if row.get(CUT)]


def markdown(spec: StudySpec, summary: list[dict], claims: list[dict], rows: list[dict] = ()) -> str:
    text = studies.claims_markdown(spec.name, spec.description, spec.grid, spec.seed_key, summary, claims)
    cut = cut_cells(list(rows))
    if cut:  # a busy machine cuts training short; such a cell must be rerun, not averaged in silently
        text += ("\n**Cut by a time budget** (trained fewer steps than set: rerun these cells on a quieter machine): "
                 + "; ".join(cut) + "\n")
    return text


def write_report(out_dir: Path, spec: StudySpec, rows: list[dict], summary: list[dict], claims: list[dict]) -> None:
    from pipelines.atomic import write_json_atomic, write_text_atomic
    from pipelines.evaluation.plots import write_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "claims.md", markdown(spec, summary, claims, rows))
    write_json_atomic(out_dir / "claims.json", {"cells": rows, "summary": summary, "claims": claims})
    columns = ["cell", *spec.grid, *(f"{m}|{k}" for m in spec.models for k in spec.metrics), CUT]
    write_csv(rows, out_dir / "cells.csv", columns)
    write_csv(summary, out_dir / "summary.csv", [*spec.group_keys, "model", "metric", "mean", "ci_low", "ci_high", "n_seeds"])
    studies.plot_summary(summary, out_dir / "claims.png", spec.name, spec.group_keys, list(spec.models), spec.metrics)


def study_env(root: Path, parent_run_id: str | None) -> dict:
    """Experiments run in temporary workspaces: point them at this project's MLflow store and study run."""
    from alignflow.runtime import tracking

    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri(root)
    if parent_run_id:
        env[tracking.PARENT_ENV] = parent_run_id
    return env
