"""Tiny policy fixtures for the RLHF tests: a BPE tokenizer on prompt-like text and a 2-layer Llama."""
import pytest

from pipelines.data.template import format_prompt
from pipelines.models.causal_lm import build_llama
from pipelines.models.tokenizer import train_bpe_tokenizer
from tests.models.conftest import TINY_MODEL, make_corpus


@pytest.fixture(scope="session")
def tokenizer():
    texts = [format_prompt(t) + " " + t for t in make_corpus(400)]
    return train_bpe_tokenizer(texts, vocab_size=320, min_frequency=2, model_max_length=128)


@pytest.fixture
def policy_lm(tokenizer):
    return build_llama(dict(TINY_MODEL), tokenizer, seed=0).eval()


@pytest.fixture
def prompts():
    return ["the cat sees a red box", "a dog", "my friend reads the old book today at night", "the robot"]
