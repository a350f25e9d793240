"""Where the project lives: the repository root and the conventional folders under it."""
from __future__ import annotations

import os
from pathlib import Path

from alignflow.runtime.errors import AlignflowError


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd or $ALIGNFLOW_ROOT) holding dvc.yaml."""
    env = os.environ.get("ALIGNFLOW_ROOT")
    here = Path(start or env or os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise AlignflowError(f"no dvc.yaml found at or above {here}; run alignflow inside the project")


def mlflow_dir(root: Path) -> Path:
    return root / "mlflow"


def checkpoints_dir(root: Path) -> Path:
    return root / "checkpoints"
