"""pyproject.toml declares what the code imports, in ranges, and requirements.lock pins each of them."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement

from tests.project import REPO

CODE = ("alignflow", "pipelines", "stages", "tasks", "flows")


def _norm(name: str) -> str:
    """PEP 503 names: ruamel.yaml.clib, ruamel_yaml_clib and ruamel-yaml-clib are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return {_norm(r.name): r for r in reqs}


def test_every_directly_imported_package_is_declared():
    """Fails when the code imports a distribution that only arrives as someone else's dependency."""
    imported = set()
    for pkg in CODE:
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module.split(".")[0])
    third = {m for m in imported if m not in sys.stdlib_module_names and m not in CODE}
    dists = packages_distributions()
    declared = set(_declared())
    # an extra that is not installed (deepspeed without `.[deepspeed]`) is found by its import name
    missing = {m: dists.get(m) for m in third
               if not any(_norm(d) in declared for d in dists.get(m) or [m])}
    assert missing == {}


def test_ranges_in_pyproject_and_every_one_pinned_in_the_lock():
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            lock[_norm(name.strip())] = version.strip(" \\")
    for name, req in _declared().items():
        assert not any(spec.operator == "==" for spec in req.specifier), f"{req}: a range, not a pin"
        if name in ("trl", "accelerate"):  # the bench extra is not in the lock (benchmarks only)
            continue
        if name == "torch":  # installed first by the Makefile, the CPU wheel, not through the lock
            makefile = (REPO / "Makefile").read_text()
            assert "pip install -q torch==" in makefile
            pinned = makefile.split("pip install -q torch==")[1].split()[0]
            assert req.specifier.contains(pinned), f"{req}: the Makefile installs torch {pinned}"
            continue
        assert name in lock and req.specifier.contains(lock[name]), f"{req}: requirements.lock has {lock.get(name)}"


def test_lock_pins_every_package_with_its_hashes():
    """`make setup` installs the lock with --require-hashes: every entry needs a pin and at least one hash."""
    entries = (REPO / "requirements.lock").read_text().split("\n")
    pins = [i for i, line in enumerate(entries) if line and not line[0].isspace() and not line.startswith("#")]
    assert len(pins) > 100
    for i in pins:
        assert "==" in entries[i] and entries[i].endswith(" \\"), entries[i]
        assert entries[i + 1].strip().startswith("--hash=sha256:"), entries[i]
    assert "--require-hashes -r requirements.lock" in (REPO / "Makefile").read_text()
