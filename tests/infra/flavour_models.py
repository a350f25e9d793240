"""Tiny freshly built models of every registered family, saved with the project's own save code.

The same folders the stages write (HF checkpoint, GRAM/BT configs, LiSA, speech, visual RM), only
small enough to build in seconds; the flavour tests log them through `alignflow.runtime.flavours`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.data.template import format_example

LLAMA = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 2,
         "intermediate_size": 32, "max_position_embeddings": 256}
SENTENCES = ["the cat sat on the mat", "a dog ran to the park", "a banana is yellow", "the sky is blue",
             "a cat has four legs", "Response A Response B Preferred question"]
SPEECH = {"n_mels": 80, "d_model": 32, "n_heads": 4, "ffn_dim": 64, "subsample_channels": 32, "conv_kernel": 5,
          "acoustic_layers": 2, "textual_layers": 2, "src_ctc_layers": [1], "tgt_ctc_layers": [1],
          "cross_layer_from": 1, "dropout": 0.0, "self_attn_drop": 0.0}


def _tokenizer():
    from pipelines.models.tokenizer import train_bpe_tokenizer

    texts = [format_example(a, b) for a in SENTENCES for b in SENTENCES] * 3
    return train_bpe_tokenizer(texts, 320, min_frequency=1)


def _llama(tokenizer, seed: int = 0):
    from pipelines.models.causal_lm import build_llama

    return build_llama(LLAMA, tokenizer, seed=seed)


def causal_lm(out: Path) -> Path:
    from pipelines.models.causal_lm import save_causal_lm

    tok = _tokenizer()
    save_causal_lm(_llama(tok), tok, str(out))
    return out


def gram(out: Path) -> Path:
    from pipelines.models.reward.gram import GenerativeRewardModel

    tok = _tokenizer()
    GenerativeRewardModel(_llama(tok, 1), tok, max_length=200).save(str(out))
    return out


def bt(out: Path) -> Path:
    from pipelines.models.reward.bt import BTRewardModel

    tok = _tokenizer()
    BTRewardModel(_llama(tok, 2), tok, max_length=200, seed=3).save(str(out))
    return out


def lisa(out: Path) -> Path:
    from pipelines.compression.io import save_lisa_model
    from pipelines.compression.lisa import apply_lisa

    tok = _tokenizer()
    save_lisa_model(apply_lisa(_llama(tok, 4), [1, 2], rank=2, mode="full"), out)
    tok.save_pretrained(str(out))
    return out


def speech(out: Path) -> Path:
    import torch

    from pipelines.speech.models import build_model, save_model
    from pipelines.speech.vocab import train_vocab

    vocab = train_vocab(SENTENCES * 5 + ["die Katze sitzt auf der Matte", "ein Hund lief zum Park"] * 5, 40)
    torch.manual_seed(0)
    model = build_model("nast", SPEECH, len(vocab), {"pad": vocab.pad_id, "bos": vocab.bos_id, "eos": vocab.eos_id})
    save_model(model, out)
    vocab.save(out)
    return out


def visual(out: Path) -> Path:
    from pipelines.models.reward.visual import VisualRewardModel
    from pipelines.models.vlm.llava import build_llava, train_vlm_tokenizer
    from tests.visual.test_vlm_reward import CFG, WORDS

    rng = np.random.default_rng(0)
    tok = train_vlm_tokenizer([" ".join(rng.choice(WORDS, 8)) for _ in range(200)], 300)
    VisualRewardModel(build_llava(CFG, tok, seed=0), tok, 40, seed=3).save(out)
    return out


# registered name -> (flavour, builder): one of each family the stages publish
def lrhp(out: Path) -> Path:
    from pipelines.models.preference.encoder import PairEncoder

    tok = _tokenizer()
    PairEncoder(_llama(tok, 4), tok, dim=8, max_length=200, seed=5).save(str(out))
    return out


MODELS = {"base-lm": ("causal-lm", causal_lm), "policy-sft": ("chat-lm", causal_lm), "reward-gram": ("gram", gram),
          "reward-bt": ("bt", bt), "policy-lisa": ("lisa", lisa), "st-nast": ("speech", speech),
          "reward-visual": ("visual", visual), "preference-repr": ("lrhp", lrhp)}
