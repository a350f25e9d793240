"""The stage graph, read from dvc.yaml through DVC itself (templating and foreach included).

dvc.yaml is the only place stages are declared; the Prefect flow, `alignflow status` and
`alignflow lineage` all derive what they need from here.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import networkx as nx

from alignflow.runtime.errors import AlignflowError


@dataclass(frozen=True)
class StageInfo:
    name: str
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params: tuple[str, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    always_changed: bool = False  # DVC runs it on every repro (e.g. external_inputs)

    @property
    def registry(self) -> dict | None:
        """`meta.register` of the stage: which model it publishes and how its gate is read.

        None when the stage publishes nothing, including a `foreach` variant whose templated
        `register.name` is empty (DVC interpolates scalars only, so a template cannot drop the key).
        """
        register = (self.meta or {}).get("register")
        return register if register and register.get("name") else None


@dataclass
class StageGraph:
    stages: dict[str, StageInfo]
    graph: nx.DiGraph  # edge a -> b: stage a consumes an output of stage b

    def order(self, targets: list[str] | None = None) -> list[str]:
        """Stages in execution order; with targets, only they and everything upstream of them."""
        unknown = [t for t in targets or [] if t not in self.stages]
        if unknown:
            raise AlignflowError(f"unknown stage(s) {', '.join(unknown)}; dvc.yaml has: {', '.join(self.stages)}")
        wanted = set(self.stages)
        if targets:
            wanted = set(targets)
            for target in targets:
                wanted |= nx.descendants(self.graph, target)
        ordered = list(nx.lexicographical_topological_sort(self.graph.reverse(copy=True)))
        return [name for name in ordered if name in wanted]

    def default_targets(self, run_ablations: bool) -> list[str] | None:
        """What a run without `--stages` reproduces: every stage, or all but the ablation stages.

        An ablation stage (`meta.ablation: true` in dvc.yaml) retrains a main model with one component
        changed; the default profile leaves them to the smoke and study profiles (params `run_ablations`).
        An ablation that a main stage consumes still runs, as that stage's upstream.
        """
        if run_ablations:
            return None
        return [name for name, info in self.stages.items() if (info.meta or {}).get("ablation") is not True]

    def upstream(self, name: str) -> list[str]:
        return [s for s in self.order([name]) if s != name]

    def downstream(self, name: str) -> list[str]:
        """Every stage that (transitively) consumes this stage's outputs, in execution order."""
        consumers = nx.ancestors(self.graph, name)
        return [s for s in self.order() if s in consumers]

    def direct_consumers(self, name: str) -> list[str]:
        return sorted(self.graph.predecessors(name))

    def producer_of(self, path: str) -> StageInfo | None:
        """The stage whose output is `path` or contains it."""
        target = Path(path).as_posix().rstrip("/")
        for info in self.stages.values():
            for out in info.outs:
                if target == out or target.startswith(out.rstrip("/") + "/"):
                    return info
        return None

    def consumers_of(self, path: str) -> list[str]:
        """Stages with a dependency equal to, inside, or containing `path`."""
        target = Path(path).as_posix().rstrip("/")
        found = []
        for info in self.stages.values():
            for dep in info.deps:
                if target == dep or target.startswith(dep + "/") or dep.startswith(target + "/"):
                    found.append(info.name)
                    break
        return found


def load_stage_graph(root: Path, repo=None) -> StageGraph:
    """The graph of `root`'s dvc.yaml; pass an open DVC `Repo` of `root` to reuse it (one index build)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        if repo is not None:
            return _graph_of(repo)
        with Repo(str(root)) as opened:
            return _graph_of(opened)
    except DvcException as exc:
        raise AlignflowError(f"cannot read the stage graph from {root / 'dvc.yaml'}: {exc}") from exc


def _graph_of(repo) -> StageGraph:
    index = repo.index
    stages: dict[str, StageInfo] = {}
    for stage in index.stages:
        if not getattr(stage, "cmd", None):
            continue  # .dvc-tracked data, not a pipeline stage
        params = tuple(sorted(k for d in stage.deps if hasattr(d, "params") for k in d.params))
        stages[stage.addressing] = StageInfo(
            name=stage.addressing,
            cmd=stage.cmd if isinstance(stage.cmd, str) else " && ".join(stage.cmd),
            deps=tuple(d.def_path for d in stage.deps if not hasattr(d, "params")),
            outs=tuple(o.def_path for o in stage.outs),
            params=params,
            meta=dict(stage.meta or {}),
            always_changed=bool(getattr(stage, "always_changed", False)),
        )
    graph = nx.DiGraph()
    graph.add_nodes_from(stages)
    for a, b in index.graph.edges:
        if a.addressing in stages and b.addressing in stages:
            graph.add_edge(a.addressing, b.addressing)
    return StageGraph(stages=stages, graph=graph)


_LOCK_CACHE: dict[str, tuple[tuple, dict]] = {}  # dvc.lock path -> (its stat when read, its stages)


def read_lock(root: Path) -> dict[str, Any]:
    """dvc.lock's stages: what DVC last recorded for each (md5s of deps and outs, param values). Read-only.

    DVC rewrites dvc.lock in place, and under `alignflow run --jobs N` another stage's `dvc repro` may
    be committing while this process reads: the read holds DVC's repository lock, as DVC's own commands
    do. A dvc.lock unchanged since the last read (same size, mtime and inode) is not parsed again.
    """
    path = Path(root) / "dvc.lock"
    with _dvc_repository_lock(Path(root)):
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = _LOCK_CACHE.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
        text = path.read_text(encoding="utf-8")
    import yaml

    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    stages = data.get("stages", {})
    _LOCK_CACHE[str(path)] = (stamp, stages)
    return stages


@contextmanager
def _dvc_repository_lock(root: Path) -> Iterator[None]:
    """DVC's own repository lock (`.dvc/tmp/lock`), waited for; nothing outside a DVC project."""
    tmp_dir = root / ".dvc" / "tmp"
    if not (root / ".dvc").is_dir():
        yield
        return
    from dvc.lock import make_lock

    tmp_dir.mkdir(exist_ok=True)
    with make_lock(str(tmp_dir / "lock"), tmp_dir=str(tmp_dir), wait=True):
        yield
