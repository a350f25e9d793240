"""The tiny corpus, tokenizer and 2-layer Llama config the model tests use, shared with the loop's tests."""

from tests.models.conftest import corpus, tiny_cfg, tokenizer  # noqa: F401 - pytest fixtures
