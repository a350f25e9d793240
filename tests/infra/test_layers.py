"""The layer rules of docs/architecture.md hold over the whole import graph (alignflow/layers.py)."""
from __future__ import annotations

from alignflow.layers import area_cycles, layer_violations, violations
from tests.project import REPO


def test_the_project_keeps_its_layers():
    """Breaks when pipelines/ imports alignflow/stages/prefect/mlflow/dvc, a stage imports the CLI, tasks or
    flows, the CLI imports a stage, the runtime reaches up, or two pipelines areas import each other."""
    assert violations(REPO) == []


def _write(root, files: dict) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_planted_violations_are_reported(tmp_path):
    """A lazy import inside a function counts as much as a top-level one; breaks if the checker only read
    top-level imports, missed `from x import y`, or let an allowed import through as a violation."""
    _write(tmp_path, {
        "pipelines/__init__.py": "", "pipelines/a/__init__.py": "", "pipelines/b/__init__.py": "",
        "pipelines/a/m.py": "def f():\n    import mlflow\n",
        "pipelines/b/n.py": "from alignflow.runtime.stage import StageContext\n",
        "stages/__init__.py": "", "stages/x.py": "from alignflow.runtime.stage import stage_main\nimport pipelines.a.m\n",
        "stages/y.py": "from flows.pipeline import main\n",
        "alignflow/__init__.py": "", "alignflow/cli.py": "def main():\n    from stages import x\n",
    })
    assert layer_violations(tmp_path) == [
        "alignflow/cli.py: imports stages (alignflow must not import stages)",
        "pipelines/a/m.py: imports mlflow (pipelines must not import mlflow)",
        "pipelines/b/n.py: imports alignflow.runtime.stage (pipelines must not import alignflow)",
        "stages/y.py: imports flows.pipeline (stages must not import flows)",
    ]


def test_a_cycle_between_pipelines_areas_is_reported(tmp_path):
    """Breaks if areas importing each other (through any module of each) went unnoticed."""
    _write(tmp_path, {
        "pipelines/__init__.py": "", "pipelines/a/__init__.py": "", "pipelines/b/__init__.py": "",
        "pipelines/a/m.py": "from pipelines.b.n import g\n", "pipelines/b/n.py": "from pipelines.a import m\n",
        "pipelines/b/ok.py": "import torch\n",
    })
    assert area_cycles(tmp_path) == [["pipelines.a", "pipelines.b"]]
