"""Tiny Llama/BERT models built from configs (no downloads) for the LiSA tests.

Torch runs single-threaded here: on a small shared machine two intra-op threads make these
millisecond-sized ops tens of times slower, and results do not depend on the thread count.
"""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, LlamaConfig, LlamaForCausalLM

VOCAB = 64


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _llama(seed: int = 0, layers: int = 4, kv_heads: int = 4, init: float = 0.2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=128,
                         initializer_range=init, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = 0
    return model


def _bert(seed: int = 0, layers: int = 3, head: bool = True, init: float = 0.2):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, initializer_range=init)
    return (BertForMaskedLM(config) if head else BertModel(config)).eval()


@pytest.fixture
def tiny_llama():
    """Factory: tiny_llama(seed=0, layers=4, kv_heads=4, init=0.2) -> LlamaForCausalLM in eval mode."""
    return _llama


@pytest.fixture
def tiny_bert():
    """Factory: tiny_bert(seed=0, layers=3, head=True, init=0.2) -> BertForMaskedLM (or BertModel)."""
    return _bert


@pytest.fixture
def token_data():
    """Factory: token_data(n, length, seed) -> list of token-id lists with a learnable pattern."""

    def make(n: int = 16, length: int = 12, seed: int = 0) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for _ in range(n):
            start, step = torch.randint(3, VOCAB, (2,), generator=gen).tolist()
            rows.append([1] + [3 + (start + i * (step % 5 + 1) - 3) % (VOCAB - 3) for i in range(length - 1)])
        return rows

    return make
