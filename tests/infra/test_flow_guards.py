"""What the flow refuses before it touches a workspace."""
from __future__ import annotations

import pytest

from alignflow.runtime.errors import AlignflowError
from flows.pipeline import SERVED_ROOT_ENV, alignflow_pipeline


def test_a_served_deployment_refuses_another_root(tmp_path, monkeypatch):
    """A deployment's `root` parameter can be edited in the Prefect UI; breaks if the flow followed it elsewhere."""
    served, other = tmp_path / "served", tmp_path / "other"
    served.mkdir(), other.mkdir()
    monkeypatch.setenv(SERVED_ROOT_ENV, str(served))
    with pytest.raises(AlignflowError, match="refusing root="):
        alignflow_pipeline.fn(profile="smoke", root=str(other))
    assert not (other / "params.yaml").exists()


def test_run_ablations_is_read_from_params_and_checked(tmp_path):
    """Fails if a params.yaml without the key skipped the ablations, or a non-boolean value was taken."""
    from flows.pipeline import _runs_ablations

    (tmp_path / "params.yaml").write_text("seed: 0\n")
    assert _runs_ablations(tmp_path) is True
    (tmp_path / "params.yaml").write_text("run_ablations: false\n")
    assert _runs_ablations(tmp_path) is False
    (tmp_path / "params.yaml").write_text("run_ablations: sometimes\n")
    with pytest.raises(AlignflowError, match="params.yaml: run_ablations must be true or false"):
        _runs_ablations(tmp_path)
