"""Overfit tests share the tiny tokenizer and corpus of tests/models, on one torch thread (tests/speech's fixture)."""
import pytest

from tests.models.conftest import TINY_MODEL, corpus, tokenizer  # noqa: F401 - fixtures reused here
from tests.speech.conftest import _one_thread  # noqa: F401 - autouse: one torch thread per module


@pytest.fixture
def tiny_cfg():
    return dict(TINY_MODEL)
