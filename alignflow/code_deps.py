"""Code dependencies of each stage, derived from the import graph so the DVC cache never serves stale code.

A stage's command is `python -m stages.X ...`; every project module that command imports, directly or
through other project modules (`stages/`, `pipelines/`, `alignflow/`, package `__init__.py` files
included), must be a DVC dependency of the stage, or DVC (and its run-cache) would call the stage
up to date after that module changed. Imports are read statically with `ast`, including imports
inside functions (the common lazy-import style here), so a module imported only on one code path
still counts: over-approximating costs a rerun, under-approximating serves a stale result.

`alignflow deps --write` rewrites the code entries of each stage's `deps:` in dvc.yaml from this
graph (a folder whose every module is imported is listed as the folder); `alignflow deps --check`
and the test suite fail when dvc.yaml and the import graph disagree.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

PROJECT_PACKAGES = ("stages", "pipelines", "alignflow")
_MODULE_IN_CMD = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)")


def stage_module(cmd: str) -> str | None:
    """The module a stage command runs (`python -m stages.world --x` -> `stages.world`)."""
    match = _MODULE_IN_CMD.search(cmd)
    return match.group(1) if match else None


def module_file(root: Path, name: str) -> Path | None:
    """The source file of a project module or package, or None when `name` is not a project module."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, root: Path) -> set[str]:
    """Dotted names a file imports; `from a import b` yields both `a` and `a.b` (b may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(root).parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - node.level + 1]
                base = ".".join((*anchor, base) if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _files_of(root: Path, name: str) -> set[Path]:
    """The module's file plus the `__init__.py` of every package above it (Python runs them all)."""
    parts = name.split(".")
    found = set()
    for i in range(1, len(parts) + 1):
        path = module_file(root, ".".join(parts[:i]))
        if path is not None:
            found.add(path)
    return found


def import_closure(root: Path, module: str) -> set[Path]:
    """Every project source file that importing `module` can execute."""
    root = root.resolve()

    @lru_cache(maxsize=None)
    def direct(path: Path) -> frozenset[Path]:
        deps: set[Path] = set()
        for name in _imported_names(path, root):
            deps |= _files_of(root, name)
        return frozenset(deps)

    todo = list(_files_of(root, module))
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(direct(path) - seen)
    return seen


def required_files(root: Path, cmd: str) -> list[str]:
    """Project files (relative paths) the stage command imports; empty for a command that is not `-m`."""
    module = stage_module(cmd)
    if module is None or module_file(root, module) is None:
        return []
    root = root.resolve()
    return sorted(p.relative_to(root).as_posix() for p in import_closure(root, module))


def area_of(path: str) -> str:
    """The folder a code path is listed under: `pipelines/<area>` or `alignflow/runtime` for files in a
    subpackage, the file itself for top-level modules (`stages/x.py`, `alignflow/cli.py`)."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


def compact(root: Path, files: list[str]) -> list[str]:
    """The import graph's files, each subpackage they touch listed once as its folder.

    A stage that imports one module of `pipelines/evaluation` depends on the whole folder: a change
    to a sibling module reruns it (a rerun, never a stale result), and dvc.yaml lists a handful of
    code paths per stage, which a reader can take in, instead of thirty.
    """
    return sorted({area_of(f) for f in files})


def is_code_path(path: str) -> bool:
    return path.split("/")[0] in PROJECT_PACKAGES


def covered(path: str, deps: list[str] | tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_deps(root: Path, stages: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, list[str]]:
    """{stage: imported files its own deps do not cover} for stages given as {name: (cmd, deps)}."""
    report = {}
    for name, (cmd, deps) in stages.items():
        missing = [f for f in required_files(root, cmd) if not covered(f, deps)]
        if missing:
            report[name] = missing
    return report


def expected_code_deps(root: Path, cmd: str) -> list[str]:
    return compact(root, required_files(root, cmd))


def expected_by_definition(root: Path, cmds: dict[str, str]) -> dict[str, list[str]]:
    """{dvc.yaml stage definition: code deps} from {stage address: cmd}; a `foreach` group's variants
    (`group@key`) share one template, so it lists the union of theirs."""
    found: dict[str, set[str]] = {}
    for address, cmd in cmds.items():
        found.setdefault(address.split("@")[0], set()).update(expected_code_deps(root, cmd))
    return {name: sorted(paths) for name, paths in found.items()}


def _flow_item(item: str) -> str:
    """A deps entry as a YAML flow-sequence item: quoted when it holds `${...}` (a `{` opens a mapping)."""
    return f'"{item}"' if "${" in item or item[:1] in "[]{},&*!|>'%@`#" else item


def format_deps(indent: str, data: list[str], code: list[str], width: int = 118) -> list[str]:
    """`deps:` as one flow sequence: the data deps first, then the generated code deps on lines of their own.

    Code deps are many and machine-written; packing them keeps each stage's entry short enough to read
    as a catalog row, with what the stage reads up front.
    """
    lines, current = [], f"{indent}deps: ["
    cont = indent + "  "
    groups = [g for g in ([_flow_item(d) for d in data], [_flow_item(c) for c in code]) if g]
    for g, group in enumerate(groups):
        if g and current.strip() not in ("deps: [",):
            lines.append(current.rstrip() + "\n")
            current = cont
        for k, item in enumerate(group):
            last = g == len(groups) - 1 and k == len(group) - 1
            piece = item + ("]" if last else ", ")
            if len(current) + len(piece.rstrip()) > width and current.strip() not in ("", "deps: ["):
                lines.append(current.rstrip() + "\n")
                current = cont
            current += piece
    lines.append(current.rstrip() + ("\n" if groups else "]\n"))
    return lines


def _read_deps(lines: list[str], i: int, indent: str) -> tuple[list[str], int]:
    """The entries of the `deps:` at line i (block or flow style) and the index of the line after it."""
    import yaml

    head = lines[i][len(indent) + len("deps:"):].strip()
    if head.startswith("["):
        text, j = head, i + 1
        while not text.rstrip().endswith("]") and j < len(lines):
            text += " " + lines[j].strip()
            j += 1
        return [str(x) for x in yaml.safe_load(text) or []], j
    items, j = [], i + 1
    while j < len(lines) and lines[j].startswith(indent + "  - "):
        items.append(str(yaml.safe_load(lines[j][len(indent) + 4:]) or ""))
        j += 1
    return items, j


def rewrite_dvc_yaml(text: str, code_deps: dict[str, list[str]]) -> str:
    """dvc.yaml text with each named stage's code deps replaced, everything else (comments too) kept.

    Stage names sit at 2 spaces under `stages:`; a `deps:` anywhere inside the stage (a plain stage's,
    or a `foreach` template's under `do:`), block or flow style, is rewritten by `format_deps`: data
    deps first in their order, then the code paths, sorted.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = re.match(r"^  ([A-Za-z_][\w-]*):\s*$", line)
        if header:
            stage = header.group(1)
        deps = re.match(r"^( {4,})deps:", line)
        if stage in code_deps and deps:
            items, i = _read_deps(lines, i, deps.group(1))
            data = [d for d in items if not is_code_path(d)]
            out.extend(format_deps(deps.group(1), data, code_deps[stage]))
            continue
        out.append(line)
        i += 1
    return "".join(out)
