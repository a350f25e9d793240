import math
from types import SimpleNamespace

import pytest
import torch

from pipelines.data.lm_data import sft_examples
from pipelines.data.template import format_prompt
from pipelines.evaluation.perplexity import perplexity
from pipelines.evaluation.sampling import generate_responses
from pipelines.models.causal_lm import build_llama


class UniformLM(torch.nn.Module):
    """Zero logits: every next token has probability 1/vocab, so perplexity == vocab."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab))


def test_perplexity_uniform_blocks():
    blocks = torch.randint(0, 50, (5, 9))
    assert perplexity(UniformLM(50), blocks, batch_size=2) == pytest.approx(50.0, rel=1e-5)


def test_perplexity_uniform_examples_ignores_masked(tokenizer):
    exs = sft_examples([{"prompt": "a", "response": "the cat"}, {"prompt": "b c d", "response": ""}], tokenizer, 64)
    assert perplexity(UniformLM(len(tokenizer)), exs, batch_size=2) == pytest.approx(len(tokenizer), rel=1e-5)


def test_perplexity_token_weighted(tokenizer, tiny_cfg):
    model = build_llama(tiny_cfg, tokenizer, seed=0)
    blocks = torch.randint(0, len(tokenizer), (6, 12))
    whole = perplexity(model, blocks, batch_size=6)
    assert perplexity(model, blocks, batch_size=4) == pytest.approx(whole, rel=1e-5)
    assert math.isfinite(whole) and whole > 1


PROMPTS = ["the cat", "a dog sees", "my friend builds a very long", ""]


@pytest.fixture(scope="module")
def model(tokenizer, tiny_cfg_session):
    return build_llama(tiny_cfg_session, tokenizer, seed=3)


def test_sampling_deterministic(model, tokenizer):
    kw = dict(max_new_tokens=8, temperature=1.0, top_k=20, batch_size=2, progress=False)
    a = generate_responses(model, tokenizer, PROMPTS, seed=1, **kw)
    torch.manual_seed(12345)  # caller RNG must not matter
    b = generate_responses(model, tokenizer, PROMPTS, seed=1, **kw)
    c = generate_responses(model, tokenizer, PROMPTS, seed=2, **kw)
    assert a == b and len(a) == len(PROMPTS) and all(isinstance(s, str) for s in a)
    assert a != c


def _manual_greedy(model, tokenizer, prompt, n):
    ids = [tokenizer.bos_token_id] + tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
    return tokenizer.decode(out, skip_special_tokens=True).strip()


def test_greedy_is_temperature_zero(model, tokenizer):
    model.eval()
    got = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=6, temperature=0.0, seed=0,
                             batch_size=3, progress=False)
    again = generate_responses(model, tokenizer, PROMPTS, max_new_tokens=6, temperature=0.0, seed=99,
                               batch_size=1, progress=False)
    assert got == again
    assert got == [_manual_greedy(model, tokenizer, p, 6) for p in PROMPTS]
