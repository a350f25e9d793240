"""The prefs stage on bad and real-world input: one line and exit 2 for bad input, nothing written;
invalid records skipped and counted under `prefs.invalid: skip`; `prefs.hub` without a local path."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.params import render_profile
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from stages import prefs
from tests.project import REPO, run_stage

PAIR = {"prompt": "What is 2 plus 2?", "chosen": "4", "rejected": "5"}


def _project(tmp_path, **prefs_changes):
    """A bare project: dvc.yaml, the real default profile (the schema), params.yaml rendered from it."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "profiles").mkdir()
    shutil.copy(REPO / "profiles/default.yaml", tmp_path / "profiles/default.yaml")
    params = render_profile(REPO, "default")
    params["prefs"].update(prefs_changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path, params


def _stage_command(root):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIGNFLOW_", "MLFLOW_"))}
    env.update(ALIGNFLOW_ROOT=str(root), ALIGNFLOW_TRACKING="off",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "stages.prefs", "--out", "data/prefs"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_non_utf8_file_exits_2_with_one_line_and_writes_nothing(tmp_path):
    """End to end through stage_main in a real process: a latin-1 byte on line 2 gives exit code exactly 2
    and the one line naming file, line and column, and data/prefs is never created. Breaks if the decode
    error escapes as Python's bare codec message, a traceback (exit 1, retried), or a partial output."""
    root, _ = _project(tmp_path, path="latin1.jsonl")
    (root / "latin1.jsonl").write_bytes(json.dumps(PAIR).encode() + b"\n"
                                        + b'{"prompt": "caf\xe9?", "chosen": "a", "rejected": "b"}\n')
    proc = _stage_command(root)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"alignflow stage 'prefs' failed: {root / 'latin1.jsonl'}: line 2: "
                    "not valid UTF-8 (byte 0xe9 at column 16)")
    assert "Traceback" not in proc.stderr
    assert not (root / "data").exists()


def test_string_limit_exits_2_naming_the_key(tmp_path):
    """The issue's `prefs.limit: "10"` hand edit: refused by the schema before the stage runs, exit 2, one
    line. Breaks if load_params stops checking params.yaml (it ended in a TypeError traceback, exit 1)."""
    root, _ = _project(tmp_path, limit="10")
    proc = _stage_command(root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "alignflow stage 'prefs' failed: params.yaml: prefs.limit: expected int or null, got str '10'")
    assert not (root / "data").exists()


def _hh(prompt, chosen, rejected):
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant:{chosen}", "rejected": f"\n\nHuman: {prompt}\n\nAssistant:{rejected}"}


def test_skip_counts_invalid_records_in_the_metrics(tmp_path):
    """`prefs.invalid: skip` keeps valid records (an empty response included), counts the rest per reason
    as skipped/<reason>; `error` names the first invalid line and points at the param. Breaks if skipped
    records go uncounted, if empty responses are dropped, or if the error loses its hint."""
    rows = [_hh("Hi.", " Hello!", ""), _hh("Same?", " Yes.", " Yes."), {"chosen": "no transcript"},
            _hh("Two plus two?", " 4", " 5")]
    root, params = _project(tmp_path, path="dump.jsonl", invalid="skip")
    write_jsonl_atomic(rows, root / "dump.jsonl")
    run_stage(root, "prefs", prefs.run, params)
    metrics = json.loads((root / "data/prefs/metrics.json").read_text())
    assert metrics["n_pairs"] == 2 and metrics["n_skipped"] == 2
    assert metrics["skipped/identical"] == 1 and metrics["skipped/missing_field"] == 1
    assert metrics["skipped/duplicate_id"] == 0 and metrics["n_empty_rejected"] == 1
    assert [r["rejected"] for r in read_jsonl(root / "data/prefs/train.jsonl")] == ["", "5"]
    params["prefs"]["invalid"] = "error"
    with pytest.raises(ValueError, match=r"dump\.jsonl: line 2: field 'rejected': chosen and rejected are "
                                         r"identical \(prefs\.invalid: skip drops such records"):
        run_stage(root, "prefs", prefs.run, params)


def test_hub_without_a_local_path(tmp_path, monkeypatch):
    """`prefs.path: null` with `prefs.hub: NAME` is the documented way to use a hub dataset. Breaks if the
    stage joins the null path onto the root (a TypeError) or still requires a file."""
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: [_hh("Hi.", " Hello!", " Go away.")])
    root, params = _project(tmp_path, path=None, hub="Anthropic/hh-rlhf")
    run_stage(root, "prefs", prefs.run, params)
    metrics = json.loads((root / "data/prefs/metrics.json").read_text())
    assert metrics["n_pairs"] == 1 and metrics["source"] == "Anthropic/hh-rlhf"
    params["prefs"]["hub"] = None
    with pytest.raises(ParamsError, match=r"prefs\.path: set a preference file, or name a dataset in prefs\.hub"):
        run_stage(root, "prefs", prefs.run, params)
