"""The project's layers and what each may import, checked over the static import graph.

    flows/  ->  tasks/  ->  alignflow/ (CLI, registry, studies)  ->  alignflow/runtime/  ->  pipelines/
                                 stages/ (one recipe per DVC stage)  ->  alignflow/runtime/, pipelines/

- `pipelines/` is the science: plain functions and modules, importable without Prefect, DVC or
  MLflow. It imports nothing of the project's other layers, and its areas (`pipelines/<area>`)
  import each other without cycles, so each area can be read, tested and reused on its own.
- `stages/` are recipes: a stage reads params and the paths dvc.yaml hands it, calls `pipelines`, and
  writes outputs through `alignflow.runtime`. Stages never import the CLI, tasks or flows.
- `alignflow/runtime/` is what a stage process needs (params, stage context, tracking, gates); it
  never reaches up into the CLI, stages, tasks or flows.
- `alignflow/` (CLI, registry, lineage, studies) wraps recipes from `pipelines/`; it never imports a
  stage module (a CLI command and a stage share a recipe in `pipelines/`, not each other).

`violations(root)` lists every import that breaks a rule; `tests/infra/test_layers.py` keeps it empty.
"""
from __future__ import annotations

from pathlib import Path

from alignflow.code_deps import _imported_names

# (who, what it must not import): names are dotted prefixes; the first matching rule row applies.
FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pipelines", ("alignflow", "stages", "tasks", "flows", "prefect", "mlflow", "dvc")),
    ("stages", ("tasks", "flows", "prefect", "alignflow.cli", "alignflow.registry", "alignflow.study",
                "alignflow.lineage", "alignflow.lisa_cli", "alignflow.workspace_lock", "alignflow.interrupt")),
    ("alignflow.runtime", ("stages", "tasks", "flows", "alignflow.cli", "alignflow.registry", "alignflow.study",
                           "alignflow.lineage", "alignflow.lisa_cli", "alignflow.workspace_lock")),
    ("alignflow", ("stages",)),
    ("tasks", ("flows", "stages")),
)
PACKAGES = ("pipelines", "stages", "alignflow", "tasks", "flows")


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def project_files(root: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def layer_violations(root: Path) -> list[str]:
    """'module imports name (rule)' for every import a layer forbids."""
    root = root.resolve()
    found = []
    for path in project_files(root):
        module = module_name(root, path)
        rule = next((r for r in FORBIDDEN if _within(module, r[0])), None)
        if rule is None:
            continue
        names = _imported_names(path, root)
        for name in sorted(n for n in names if "." not in n or n.rsplit(".", 1)[0] not in names):  # `from a import b`: a
            bad = next((f for f in rule[1] if _within(name, f)), None)
            if bad is not None:
                found.append(f"{path.relative_to(root)}: imports {name} ({rule[0]} must not import {bad})")
    return found


def module_area(module: str) -> str | None:
    """`pipelines.rlhf.ppo` -> `pipelines.rlhf`; None outside a pipelines area."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipelines" and len(parts) >= 2 else None


def area_cycles(root: Path) -> list[list[str]]:
    """Cycles in the graph of pipelines areas (an edge a -> b: a module of area a imports area b)."""
    import networkx as nx

    root = root.resolve()
    graph = nx.DiGraph()
    for path in project_files(root):
        source = module_area(module_name(root, path))
        if source is None or path.parent == root / "pipelines":
            continue
        for name in _imported_names(path, root):
            target = module_area(name)
            if target and target != source and (root / target.replace(".", "/")).is_dir():
                graph.add_edge(source, target)
    return sorted(sorted(c) for c in nx.simple_cycles(graph))


def violations(root: Path) -> list[str]:
    """Every broken layer rule and every cycle between pipelines areas, as one line each."""
    return layer_violations(root) + [f"pipelines areas import each other in a cycle: {' -> '.join(c)}"
                                     for c in area_cycles(root)]
