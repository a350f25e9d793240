"""Fingerprints of the files that params name, so a changed file behind an unchanged path reruns its stage.

DVC tracks a param's value, not the file it names: replacing a real preference dump, a checkpoint or
a MuST-C root in place would leave its stage "up to date". The `external_inputs` stage (dvc.yaml,
`always_changed`) runs on every repro and writes `data/external_inputs/<stage>.json` with the md5 of
every file or folder the stage's path params name; each consuming stage depends on its own file, so
DVC reruns it exactly when that content changes (and nothing else when it does not: the
fingerprint file's bytes are then identical).

What is fingerprinted: a local file (md5 of its bytes) or folder (md5 over its files' relative paths
and md5s). Not hashed: null values, hub names (recorded as given; a hub dataset's revision cannot
be checked offline) and paths inside another stage's output (DVC already tracks those through the
consuming stage's own deps). Folder hashes are cached by (size, mtime, inode) in
`.alignflow/hash_cache.json`, as DVC does, so a large corpus is read once.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.atomic import write_json_atomic
from alignflow.runtime.params import load_params
from alignflow.runtime.tracking import file_md5

OUTPUT_DIR = "data/external_inputs"
CACHE_FILE = ".alignflow/hash_cache.json"
HUB_PREFIX = "hub:"

# stage -> the params naming files it reads (keep dvc.yaml's `external_inputs` params in step: a test checks)
CONSUMERS: dict[str, tuple[str, ...]] = {
    "prefs": ("prefs.path", "prefs.hub"),
    "tokenizer": ("tokenizer.pretrained",),
    "base_lm": ("base_lm.init_from",),
    "lrhp": ("lrhp.backbone",),
    "rm_compare": ("rm_compare.extra_eval.source",),
    "speech_corpus": ("speech.mustc_root",),
    "visual_world": ("visual.real.pool", "visual.real.test", "visual.real.image_root"),
    "visual_policy": ("visual.policy.init",),
}
HUB_KEYS = {"prefs.hub"}  # values that are always hub names


def lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class HashCache:
    """md5 of files keyed by (size, mtime_ns, inode): a file is read again only when it changed."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def md5(self, file: Path) -> str:
        st = file.stat()
        key = str(file.resolve())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = self.entries.get(key)
        if hit and hit[:3] == stamp:
            return hit[3]
        md5 = file_md5(file)
        self.entries[key] = [*stamp, md5]
        self.dirty = True
        return md5

    def save(self) -> None:
        if self.dirty:
            write_json_atomic(self.path, self.entries)


def tree_md5(folder: Path, cache: HashCache) -> tuple[str, int]:
    """(md5 over sorted relative paths and file md5s, number of files) of a folder, symlinks followed."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            rows.append(f"{file.relative_to(folder).as_posix()}\t{cache.md5(file)}")
    rows.sort()
    return hashlib.md5("\n".join(rows).encode("utf-8")).hexdigest(), len(rows)


def fingerprint(root: Path, key: str, value: Any, stage_outputs: tuple[str, ...], cache: HashCache) -> dict:
    """What identifies the content behind one param value."""
    if value in (None, ""):
        return {"value": None}
    text = str(value)
    if key in HUB_KEYS or text.startswith(HUB_PREFIX):
        return {"value": text, "kind": "hub"}
    path = Path(text).expanduser()
    path = path if path.is_absolute() else root / path
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = None
    if rel is not None and any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in stage_outputs):
        return {"value": text, "kind": "stage output"}
    if path.is_file():
        return {"value": text, "kind": "file", "md5": cache.md5(path)}
    if path.is_dir():
        md5, n = tree_md5(path, cache)
        return {"value": text, "kind": "folder", "md5": md5, "files": n}
    # a name that is no local path (e.g. visual.policy.init as a hub model): the stage decides if that is valid
    return {"value": text, "kind": "not a local path"}


def compute(root: Path, params: dict | None = None, stage_outputs: tuple[str, ...] | None = None) -> dict[str, dict]:
    """{stage: {param: fingerprint}} for every consuming stage."""
    root = root.resolve()
    params = load_params(root) if params is None else params
    if stage_outputs is None:
        from alignflow.runtime.stage_graph import load_stage_graph

        stage_outputs = tuple(o for info in load_stage_graph(root).stages.values() for o in info.outs
                              if not o.startswith(OUTPUT_DIR))
    cache = HashCache(root / CACHE_FILE)
    result = {stage: {key: fingerprint(root, key, lookup(params, key), stage_outputs, cache) for key in keys}
              for stage, keys in CONSUMERS.items()}
    cache.save()
    return result


def read_recorded(root: Path) -> dict[str, dict]:
    """The fingerprints the last `external_inputs` run wrote ({} for stages never fingerprinted)."""
    recorded = {}
    for stage in CONSUMERS:
        path = root / OUTPUT_DIR / f"{stage}.json"
        try:
            recorded[stage] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded[stage] = {}
    return recorded


def changed(root: Path, stage_outputs: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """{stage: [param keys whose content differs from the recorded fingerprint]} (`stage_outputs`: as `compute`)."""
    now, before = compute(root, stage_outputs=stage_outputs), read_recorded(root)
    report = {}
    for stage, prints in now.items():
        keys = [k for k, v in prints.items() if before.get(stage, {}).get(k) != v]
        if keys:
            report[stage] = keys
    return report


def main() -> None:
    from pipelines.atomic import atomic_dir
    from alignflow.runtime.errors import AlignflowError
    from alignflow.runtime.paths import repo_root

    root = repo_root()
    try:
        prints = compute(root)
    except AlignflowError as exc:
        print(f"alignflow stage 'external_inputs' failed: {exc}", file=sys.stderr)
        sys.exit(2)
    with atomic_dir(root / OUTPUT_DIR) as staged:
        for stage, content in prints.items():
            write_json_atomic(staged / f"{stage}.json", content)
    hashed = sum(1 for p in prints.values() for f in p.values() if "md5" in f)
    print(f"[external_inputs] {hashed} external file(s) or folder(s) fingerprinted", file=sys.stderr)


if __name__ == "__main__":
    main()
