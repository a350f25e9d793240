"""The DVC remote on a shared folder: where runs push their outputs and run-cache, and clones pull them.

`services up` adds it as the default remote in the workspace's local config (`.dvc/config.local`,
never committed), and `down` removes it again. A successful flow pushes whenever a default remote is
configured (by `services up` or by the user), so another clone can `dvc pull --run-cache` and reproduce
the DAG without running a stage.
"""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.errors import AlignflowError

REMOTE_NAME = "alignflow-shared"


def configure_remote(root: Path, path: Path, name: str = REMOTE_NAME) -> None:
    """`dvc remote add --local --force -d NAME PATH`."""
    from dvc.repo import Repo

    path.mkdir(parents=True, exist_ok=True)
    with Repo(str(root)) as repo, repo.config.edit("local") as conf:
        conf["remote"][name] = {"url": str(path.resolve())}
        conf["core"]["remote"] = name


def remove_remote(root: Path, name: str = REMOTE_NAME) -> None:
    """Drop the remote (and the default pointing at it) from the local config; the folder stays."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo, repo.config.edit("local") as conf:
        conf["remote"].pop(name, None)
        if conf["core"].get("remote") == name:
            del conf["core"]["remote"]


def push_to_remote(root: Path, logger=None) -> int | None:
    """`dvc push --run-cache` to the default remote, if one is configured; the number of files pushed.

    A push that fails raises: the run's outputs are committed locally, but the team does not have them.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote")
        if not name:
            return None
        try:
            pushed = repo.push(run_cache=True)
        except Exception as exc:  # noqa: BLE001 - DVC's own error says what went wrong
            raise AlignflowError(f"dvc push --run-cache to remote {name} failed: {exc}; the outputs are committed "
                                 "locally, run `dvc push --run-cache` once the remote is reachable") from exc
    if logger is not None:
        logger.info("pushed %d files and the run-cache to DVC remote %s", pushed, name)
    return pushed
