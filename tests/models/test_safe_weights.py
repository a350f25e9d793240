"""User-supplied checkpoints load from safetensors only: a folder holding only pickle weights is refused
with a message saying so, before anything is unpickled."""
from __future__ import annotations

import json

import pytest
import torch

from pipelines.models.safe_weights import PickleCheckpointError, require_safetensors


def _bin_only(folder, model_type="llama"):
    """A checkpoint folder as older transformers saved it: config.json + pytorch_model.bin (a pickle)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    return folder


@pytest.fixture
def no_unpickling(monkeypatch):
    """torch.load raises if anything tries to read a pickle, so a test can prove nothing was unpickled."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called on a user-supplied file")
    monkeypatch.setattr(torch, "load", refuse)


def test_require_safetensors(tmp_path):
    """Breaks if a pickle-only folder is accepted, if the error does not name the pickle file, or if a
    folder with safetensors shards is refused."""
    folder = _bin_only(tmp_path / "old")
    with pytest.raises(PickleCheckpointError, match=r"old: checkpoint weights are only in pickle format \(pytorch_model\.bin\)"):
        require_safetensors(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        require_safetensors(tmp_path / "empty")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert [p.name for p in require_safetensors(folder)] == ["model-00001-of-00002.safetensors"]


def test_init_from_refuses_a_bin_only_folder(tmp_path, no_unpickling):
    """base_lm.init_from goes through load_causal_lm. Breaks if it falls back to pytorch_model.bin."""
    from pipelines.models.causal_lm import load_causal_lm

    with pytest.raises(PickleCheckpointError, match="pytorch_model.bin"):
        load_causal_lm(str(_bin_only(tmp_path / "lm")))


def test_visual_policy_init_refuses_a_bin_only_folder(tmp_path, no_unpickling):
    """visual.policy.init goes through load_vlm; transformers would fail with a bare OSError (exit 1,
    retried). Breaks if the pre-check is removed."""
    from pipelines.models.vlm.llava import load_vlm

    with pytest.raises(PickleCheckpointError, match="LLaVA checkpoint weights are only in pickle format"):
        load_vlm(str(_bin_only(tmp_path / "llava", "llava")))


def test_lisa_cli_refuses_a_bin_only_folder(tmp_path, no_unpickling):
    """`alignflow lisa` loads arbitrary user folders; it used from_pretrained without use_safetensors.
    Breaks if a pickle-only folder reaches from_pretrained."""
    from alignflow.runtime.errors import AlignflowError
    from alignflow.lisa_cli import load_checkpoint

    with pytest.raises(AlignflowError, match="only in pickle format"):
        load_checkpoint(_bin_only(tmp_path / "user_model"))
