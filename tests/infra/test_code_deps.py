"""Every project module a stage imports is a DVC dependency of that stage, and files behind params are too."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml

from alignflow import external_inputs
from alignflow.code_deps import (compact, expected_by_definition, is_code_path, missing_deps, required_files,
                                 rewrite_dvc_yaml)
from alignflow.runtime.stage_graph import load_stage_graph
from tests.project import REPO

GRAPH = load_stage_graph(REPO)


def test_dvc_yaml_lists_exactly_the_import_graph_of_every_stage():
    """Breaks when a stage (or a module it imports) gains an import of a project module that dvc.yaml does not
    list, or when dvc.yaml lists code the stage no longer imports. Fix with `alignflow deps --write`."""
    assert missing_deps(REPO, {n: (i.cmd, i.deps) for n, i in GRAPH.stages.items()}) == {}
    expected = expected_by_definition(REPO, {n: i.cmd for n, i in GRAPH.stages.items()})
    for name, info in GRAPH.stages.items():
        listed = sorted(d for d in info.deps if is_code_path(d))
        assert listed == expected[name.split("@")[0]], f"{name}: run `alignflow deps --write`"


def test_a_module_shared_by_one_branch_is_a_dep_of_that_branch_only():
    """stages/common.py and pipelines/models/causal_lm.py. Breaks if code deps were whole top-level packages (every
    stage stale on any edit) or missed the transitive import through another module."""
    users = {n for n, i in GRAPH.stages.items() if "stages/common.py" in required_files(REPO, i.cmd)}
    assert {"base_lm", "sft", "bt_rm"} <= users
    assert not users & {"world", "prefs", "speech_corpus", "speech_vocab", "speech_features", "external_inputs"}
    lm_users = {n for n, i in GRAPH.stages.items() if "pipelines/models/causal_lm.py" in required_files(REPO, i.cmd)}
    assert "base_lm" in lm_users and "speech_features" not in lm_users
    assert "pipelines/models" not in GRAPH.stages["speech_features"].deps


def _planted_project(tmp_path: Path) -> Path:
    for rel, text in {
        "stages/__init__.py": "",
        "stages/train.py": "from pipelines.model import build\n\ndef run():\n    from pipelines.extra import helper\n",
        "pipelines/__init__.py": "",
        "pipelines/model.py": "from . import layers\n",
        "pipelines/layers.py": "",
        "pipelines/extra.py": "",
        "pipelines/unused.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_planted_missing_import_is_reported(tmp_path):
    """A lazy import inside a function and a relative import both count; breaks if the walk only read top-level
    `import` lines or ignored `from . import x`."""
    root = _planted_project(tmp_path)
    cmd = "python -m stages.train --x 1"
    assert required_files(root, cmd) == ["pipelines/__init__.py", "pipelines/extra.py", "pipelines/layers.py",
                                         "pipelines/model.py", "stages/__init__.py", "stages/train.py"]
    deps = ("stages/train.py", "pipelines/model.py", "pipelines/__init__.py", "stages/__init__.py", "data/x")
    assert missing_deps(root, {"train": (cmd, deps)}) == {"train": ["pipelines/extra.py", "pipelines/layers.py"]}


def test_compact_lists_each_subpackage_once_and_top_level_modules_as_files(tmp_path):
    """Breaks if a subpackage's files were listed one by one (dvc.yaml unreadable), or a top-level module were
    widened to its whole package (every stage stale on any edit)."""
    root = _planted_project(tmp_path)
    files = ["alignflow/runtime/stage.py", "alignflow/runtime/params.py", "pipelines/__init__.py",
             "pipelines/sub/__init__.py", "pipelines/sub/deep/a.py", "stages/train.py"]
    assert compact(root, files) == ["alignflow/runtime", "pipelines/__init__.py", "pipelines/sub", "stages/train.py"]


def test_rewrite_keeps_data_deps_comments_and_other_keys():
    """Breaks if rewriting dropped a data dep, reordered them, or touched a stage it was not asked to."""
    text = textwrap.dedent("""\
        # header comment
        stages:
          a:
            cmd: python -m stages.a
            deps:
              - stages/old.py
              - data/in.jsonl
              - models/x
            params:
              - a
          b:
            cmd: python -m stages.b
            deps:
              - stages/b.py
          c:
            foreach: [x, y]
            do:
              cmd: python -m stages.c --name c@${item}
              deps:
                - models/${item}
                - stages/old.py
        """)
    new = rewrite_dvc_yaml(text, {"a": ["pipelines/p.py", "stages/a.py"], "c": ["stages/c.py"]})
    data = yaml.safe_load(new)["stages"]
    assert data["a"]["deps"] == ["data/in.jsonl", "models/x", "pipelines/p.py", "stages/a.py"]
    assert data["b"]["deps"] == ["stages/b.py"] and new.startswith("# header comment")
    assert data["c"]["do"]["deps"] == ["models/${item}", "stages/c.py"]


def test_external_inputs_stage_params_match_the_consumers_table():
    """Breaks if a param naming a file is fingerprinted but DVC does not rerun the fingerprint on its change, or a
    consumer does not depend on its fingerprint file."""
    declared = set(GRAPH.stages["external_inputs"].params)
    assert declared == {k for keys in external_inputs.CONSUMERS.values() for k in keys}
    for stage in external_inputs.CONSUMERS:
        assert f"{external_inputs.OUTPUT_DIR}/{stage}.json" in GRAPH.stages[stage].deps


def test_a_changed_file_behind_an_unchanged_param_changes_the_fingerprint(tmp_path):
    """Breaks if the fingerprint recorded the path only (the stale-cache bug) or hashed a folder by names only."""
    real = tmp_path / "real_prefs.jsonl"
    real.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    corpus = tmp_path / "mustc"
    (corpus / "wav").mkdir(parents=True)
    (corpus / "wav" / "a.wav").write_bytes(b"RIFF1")
    params = {"prefs": {"path": str(real), "hub": None}, "speech": {"mustc_root": str(corpus)}}
    first = external_inputs.compute(tmp_path, params, stage_outputs=("data/world",))
    real.write_text('{"prompt": "p", "chosen": "A", "rejected": "b"}\n')
    (corpus / "wav" / "a.wav").write_bytes(b"RIFF2")
    second = external_inputs.compute(tmp_path, params, stage_outputs=("data/world",))
    assert first["prefs"]["prefs.path"]["md5"] != second["prefs"]["prefs.path"]["md5"]
    assert first["speech_corpus"]["speech.mustc_root"]["md5"] != second["speech_corpus"]["speech.mustc_root"]["md5"]
    assert first["tokenizer"] == second["tokenizer"] == {"tokenizer.pretrained": {"value": None}}
    inside = external_inputs.compute(tmp_path, {"prefs": {"path": "data/world/prefs_train.jsonl"}},
                                     stage_outputs=("data/world",))
    assert inside["prefs"]["prefs.path"] == {"value": "data/world/prefs_train.jsonl", "kind": "stage output"}
    hub = external_inputs.compute(tmp_path, {"prefs": {"path": None, "hub": "Anthropic/hh-rlhf"}}, stage_outputs=())
    assert hub["prefs"] == {"prefs.path": {"value": None}, "prefs.hub": {"value": "Anthropic/hh-rlhf", "kind": "hub"}}
    assert json.loads((tmp_path / external_inputs.CACHE_FILE).read_text())  # hashes cached for the next run
