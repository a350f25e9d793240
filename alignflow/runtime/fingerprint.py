"""What a resumable checkpoint is keyed on: the stage's dvc.yaml entry, its deps' content, the code loaded.

A checkpoint made under other params, inputs or code must never be resumed; these digests change
whenever any of them does (used by `StageContext.checkpoint_dir`).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import sys
import time
from pathlib import Path

from alignflow.runtime import tracking

log = logging.getLogger("alignflow.stage")
_READ_TRIES, _READ_PAUSE_S = 6, 0.25  # about 5 s in all
PROJECT = Path(__file__).resolve().parents[2]  # where the code this process runs lives
CODE_PACKAGES = ("alignflow", "pipelines", "stages")


def loaded_code_digest(project: Path = PROJECT) -> str:
    """sha256 over the source of every project module this process has imported (path + bytes)."""
    digest = hashlib.sha256()
    files = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        try:
            rel = path.relative_to(project)
        except ValueError:
            continue
        if rel.parts and rel.parts[0] in CODE_PACKAGES and path.suffix == ".py":
            files.add((rel.as_posix(), path))
    for rel, path in sorted(files):
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def content_digest(path: Path) -> str:
    """md5 of a file, or of a folder's sorted (relative path, file md5) list; 'missing' if absent."""
    if path.is_file():
        return tracking.file_md5(path)
    if not path.is_dir():
        return "missing"
    digest = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{file.relative_to(path).as_posix()}:{tracking.file_md5(file)}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _stage_info(root: Path, name: str):
    """The stage's dvc.yaml entry (deps, outs, params), or None outside a project that declares it."""
    if not (root / "dvc.yaml").is_file():
        return None
    from alignflow.runtime.stage_graph import load_stage_graph

    for attempt in range(_READ_TRIES):
        try:
            stages = load_stage_graph(root).stages
            break
        except Exception as exc:  # noqa: BLE001 - a broken dvc.yaml is DVC's error to report, not ours
            # DVC rewrites dvc.lock in place when a stage beside this one (`run --jobs N`) commits: a read
            # in that instant fails validation. Seen in the smoke DAG at --jobs 2 (a registered model then
            # lost its MLflow flavour); a moment later the file is whole again.
            if attempt == _READ_TRIES - 1:
                log.warning("could not read dvc.yaml for stage %s: %s", name, exc)
                return None
            time.sleep(_READ_PAUSE_S * (attempt + 1))
    # DVC names stages relative to the working directory ("dir/dvc.yaml:name" from elsewhere)
    return stages.get(name) or next((s for a, s in stages.items() if a.endswith(f"dvc.yaml:{name}")), None)
