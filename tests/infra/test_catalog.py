"""dvc.yaml is the catalog: stage code takes its paths from it, and the README's stage tables agree with it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from alignflow.code_deps import covered
from alignflow.layers import PACKAGES
from alignflow.runtime.stage_graph import load_stage_graph
from tests.project import REPO, stage_invocation

GRAPH = load_stage_graph(REPO)
WORKSPACE_ROOTS = sorted({out.split("/")[0] + "/" for info in GRAPH.stages.values() for out in info.outs})
MAX_MODULE_LINES = 400


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module, f-strings as their literal parts joined with `{}`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            found.append((node.lineno, node.value))
    return sorted(found)


def workspace_literals(folder: Path) -> list[str]:
    """'file:line: literal' for each string in stage code that spells a workspace path (models/..., data/...)."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for line, text in _string_constants(path):
            if any(text.startswith(root) for root in WORKSPACE_ROOTS):
                found.append(f"{path.name}:{line}: {text!r}")
    return found


def test_stage_code_spells_no_workspace_path():
    """Breaks when a stage module hard-codes a path under a stage output root (models/, data/, ...) instead of
    taking it as a `--KEY PATH` argument from dvc.yaml (or a derived f-string like f"models/{name}")."""
    assert workspace_literals(REPO / "stages") == []


def test_a_planted_path_literal_is_found(tmp_path):
    """Breaks if the scan missed plain strings or f-strings."""
    (tmp_path / "x.py").write_text('A = "models/sft/model"\nname = "x"\nB = f"data/{name}"\nC = "plots/a.png"\n')
    assert workspace_literals(tmp_path) == ["x.py:1: 'models/sft/model'", "x.py:3: 'data/{}'"]


def test_every_path_a_command_passes_is_declared():
    """Each `--key value` in a stage's cmd that names a path is one of its deps or outs, so DVC tracks what the
    stage reads and writes. Breaks when a cmd passes a path dvc.yaml does not list (it would be read untracked)."""
    for name, info in GRAPH.stages.items():
        _, _, options = stage_invocation(name, GRAPH)
        for key, value in options.items():
            for item in value if isinstance(value, list) else [value]:
                path = str(item).partition("=")[2] or str(item)  # `NAME=PATH` pairs name model folders
                if "/" in path:
                    assert covered(path, info.deps + info.outs), f"{name}: --{key} {item} is not a dep or out"


def test_the_readme_stage_tables_match_dvc_yaml():
    """Breaks when a stage is added, renamed or removed in dvc.yaml without its README row, or a row's output
    column names folders the stage does not write."""
    rows = [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")]
    listed = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) < 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        outputs = {o.rstrip("/") for o in re.findall(r"`([^`]+)`", cells[2])}
        if not names or not all(n in GRAPH.stages or "@*" in n for n in names):
            continue
        for stage in names:
            members = [s for s in GRAPH.stages if s == stage or (stage.endswith("@*") and s.startswith(stage[:-1]))]
            for member in members:
                listed[member] = outputs
    missing = sorted(set(GRAPH.stages) - set(listed) - {"external_inputs"})
    assert not missing, f"README stage tables lack {missing}"
    for stage, outputs in listed.items():
        assert set(GRAPH.stages[stage].outs) <= outputs, f"README row of {stage}: outputs {sorted(outputs)}"


def test_no_module_outside_tests_exceeds_the_size_limit():
    """Breaks when a module grows past 400 lines: split it by job (docs/architecture.md)."""
    long = {str(p.relative_to(REPO)): n for pkg in PACKAGES + ("benchmarks",) for p in (REPO / pkg).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_command_holds_a_double_space():
    """A templated command whose empty `${item.x}` leaves two spaces in a row is written to dvc.lock as a folded
    YAML scalar that reads back with one space, so DVC calls the stage changed on every run (seen with
    `gram_finetune@gram`). Breaks when a foreach item's optional argument is split into two interpolations again."""
    doubled = [name for name, info in GRAPH.stages.items() if "  " in info.cmd]
    assert doubled == []
