"""Which stages a run must hand to DVC: one in-process `dvc status` of the whole graph, up front.

Asking DVC stage by stage (a `dvc repro` subprocess each) costs seconds per stage even when nothing
changed; one `Repo.status()` answers for all of them at once. A stage is stale when DVC reports a
change of its own (deps, params, outs, command) or a file behind one of its path params changed
(`alignflow/external_inputs.py`), or when anything upstream of it is stale. DVC still decides what a
stale stage does (run, restore from the run-cache, or nothing) and commits dvc.lock; a fresh stage
is left alone.

An `always_changed` stage (external_inputs) is always "changed" for DVC. It counts as stale only when
DVC reports something besides that (its code, params or outputs changed: then everything below it
may see new bytes) or a file it fingerprints changed (then exactly the stages reading that file are
stale, and what is below them).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from alignflow.runtime.stage_graph import StageGraph

ALWAYS_CHANGED = "always changed"


@dataclass
class StalePlan:
    own: dict[str, list]  # stage -> its own changes (DVC's entries, external-input notes)
    sources: set[str]  # stages whose change reaches everything downstream of them
    upstream: dict[str, list[str]]  # stage -> the stale sources above it
    refresh: set[str]  # always-changed stages to run only to refresh a fingerprint (see the module docstring)

    def is_stale(self, name: str) -> bool:
        return bool(self.own.get(name) or self.upstream.get(name) or name in self.refresh)

    def stale(self, names: list[str]) -> list[str]:
        return [n for n in names if self.is_stale(n)]


def _beyond_params(changes: list) -> list:
    """DVC's changes of an always-changed stage without "always changed" and without its params: a new
    param value is a new fingerprint value, which `external_inputs.changed` reports on the consumer."""
    kept = []
    for change in changes:
        if change == ALWAYS_CHANGED:
            continue
        if isinstance(change, dict) and "changed deps" in change:
            deps = {k: v for k, v in change["changed deps"].items() if not isinstance(v, dict)}
            change = {**change, "changed deps": deps} if deps else {k: v for k, v in change.items()
                                                                    if k != "changed deps"}
            if not change:
                continue
        kept.append(change)
    return kept


def plan(graph: StageGraph, dvc_status: dict[str, list], external: dict[str, list[str]]) -> StalePlan:
    """Stale stages from DVC's status of the whole repo and the external-input fingerprint changes."""
    own: dict[str, list] = {}
    sources: set[str] = set()
    refresh: set[str] = set()
    for name, changes in dvc_status.items():
        if name not in graph.stages:
            continue  # a .dvc file, not a pipeline stage
        info = graph.stages[name]
        kept = _beyond_params(changes) if info.always_changed else list(changes)
        if kept:
            own[name] = kept
            sources.add(name)
        elif info.always_changed and len(changes) > changes.count(ALWAYS_CHANGED):
            refresh.add(name)  # only its params changed
    for consumer, keys in external.items():
        if consumer not in graph.stages:
            continue
        own.setdefault(consumer, []).append({"external input changed": ", ".join(keys)})
        sources.add(consumer)
        producer = _fingerprinting_stage(graph, consumer)
        if producer is not None:
            refresh.add(producer)
    upstream = {}
    for name in graph.order():
        above = [s for s in graph.upstream(name) if s in sources]
        if above:
            upstream[name] = above
    return StalePlan(own=own, sources=sources, upstream=upstream, refresh=refresh)


def _fingerprinting_stage(graph: StageGraph, consumer: str) -> str | None:
    """The always-changed stage upstream of `consumer` that writes its fingerprint file."""
    for dep in graph.graph.successors(consumer):
        if graph.stages[dep].always_changed:
            return dep
    return None


def external_changes(root: Path, graph: StageGraph) -> dict[str, list[str]]:
    """`external_inputs.changed`, with the stage outputs taken from `graph` (no second DVC index)."""
    from alignflow.external_inputs import OUTPUT_DIR, changed

    return changed(root, tuple(o for info in graph.stages.values() for o in info.outs if not o.startswith(OUTPUT_DIR)))


def status_plan(root: Path, graph: StageGraph, repo=None) -> StalePlan:
    """`plan` from a fresh `dvc status` of `root` (in-process; pass an open `Repo` to reuse it)."""
    with each_file_read_once():
        if repo is None:
            from dvc.repo import Repo

            with Repo(str(root)) as opened:
                raw = opened.status()
        else:
            raw = repo.status()
    return plan(graph, raw, external_changes(root, graph))


@contextmanager
def each_file_read_once() -> Iterator[None]:
    """Within the block (one DVC status of the whole graph), DVC reads each params file and hashes each path once.

    DVC's status works stage by stage: every stage re-parses params.yaml (`dvc.dependency.param.load_path`,
    35 ruamel parses for the default DAG) and rebuilds the hash tree of every dependency and output
    (`dvc.output.Output._get_hash_meta`), though most stages share the same code folders and data: 474
    tree builds of about 60 distinct paths, with 37,000 file-state lookups, in the default DAG. Nothing
    changes the workspace during the status (the caller holds the workspace lock), so the first answer
    for a path is the answer for all; each params caller gets its own deep copy, as DVC's callers own
    what they get. `tests/infra/test_stale_params_once.py` fails if DVC moves either function.
    """
    from dvc.dependency import param
    from dvc.output import Output

    load_path, get_hash_meta = param.load_path, Output._get_hash_meta
    parsed: dict = {}
    hashed: dict = {}

    def load_once(path, fs, **kwargs):
        key = (str(path), id(fs), tuple(sorted(kwargs.items())))
        if key not in parsed:
            parsed[key] = load_path(path, fs, **kwargs)
        return copy.deepcopy(parsed[key])

    def hash_once(out):
        key = (str(out.fs_path), id(out.fs), out.hash_name, bool(out.use_cache))
        if key not in hashed:
            hashed[key] = get_hash_meta(out)
        return hashed[key]

    param.load_path, Output._get_hash_meta = load_once, hash_once
    try:
        yield
    finally:
        param.load_path, Output._get_hash_meta = load_path, get_hash_meta
