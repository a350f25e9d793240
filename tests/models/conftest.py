"""Shared tiny fixtures: a generated corpus, a BPE tokenizer and a 2-layer Llama config."""

import random

import pytest

from pipelines.models.tokenizer import train_bpe_tokenizer

SUBJECTS = ["the cat", "a dog", "my friend", "the robot", "our teacher", "the bird"]
VERBS = ["sees", "likes", "builds", "reads", "finds", "paints"]
OBJECTS = ["a red box", "the green tree", "3 apples", "the old book", "a small house", "42 stars"]
ENDINGS = [".", "!", " today.", " at night.", ", again."]


def make_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
        for _ in range(n)
    ]


TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
    "rope_theta": 10000.0,
}


@pytest.fixture(scope="session")
def corpus():
    return make_corpus(400)


@pytest.fixture(scope="session")
def tokenizer(corpus):
    return train_bpe_tokenizer(corpus, vocab_size=320, min_frequency=2, model_max_length=128)


@pytest.fixture
def tiny_cfg():
    return dict(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_cfg_session():
    return dict(TINY_MODEL)
