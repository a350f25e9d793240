"""A stage reading its own dvc.yaml entry rides out a dvc.lock caught mid-write by a neighbour's commit."""
from types import SimpleNamespace

import pytest

from alignflow.runtime import fingerprint, stage_graph


@pytest.fixture(autouse=True)
def _fresh_cache():
    fingerprint._stage_info.cache_clear()
    yield
    fingerprint._stage_info.cache_clear()


def test_a_half_written_lock_is_read_again(tmp_path, monkeypatch):
    """Fails if one failed read (DVC: "'./dvc.lock' validation failed") makes the stage give up on its entry:
    that is how a registered model lost its MLflow flavour in the smoke DAG at --jobs 2."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    calls = []

    def flaky(root, repo=None):
        calls.append(root)
        if len(calls) < 3:
            raise RuntimeError("'./dvc.lock' validation failed")
        return SimpleNamespace(stages={"s": "entry of s"})

    monkeypatch.setattr(stage_graph, "load_stage_graph", flaky)
    monkeypatch.setattr(fingerprint, "_READ_PAUSE_S", 0.0)
    assert fingerprint._stage_info(tmp_path, "s") == "entry of s"
    assert len(calls) == 3


def test_a_lasting_failure_still_ends(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setattr(stage_graph, "load_stage_graph", lambda root, repo=None: (_ for _ in ()).throw(ValueError("x")))
    monkeypatch.setattr(fingerprint, "_READ_PAUSE_S", 0.0)
    assert fingerprint._stage_info(tmp_path, "s") is None
