"""Overfit tests share the tiny tokenizer and corpus of tests/models, on one torch thread."""
import pytest
import torch

from tests.models.conftest import TINY_MODEL, corpus, tokenizer  # noqa: F401 - fixtures reused here


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg():
    return dict(TINY_MODEL)
