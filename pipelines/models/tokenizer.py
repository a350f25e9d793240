"""Byte-level BPE tokenizer trained from scratch, wrapped for the HF ecosystem.

Byte-level BPE never produces <unk> for real text and its decoder is the exact inverse of
its pre-tokenizer, so ``decode(encode(s)) == s`` holds for any string (no prefix space is
added, no cleanup of spaces happens). Special tokens are *not* inserted automatically
(no post-processor): the data modules add bos/eos explicitly so every stage controls
exactly where they go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = 2,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and return it as a HF fast tokenizer.

    Special token ids are fixed: pad=0, bos=1, eos=2, unk=3 (trainer inserts them first).
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must be >= {len(SPECIAL_TOKENS) + 256} for byte-level BPE")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )


def load_tokenizer(path_or_name: str):
    """Load a tokenizer saved with ``save_pretrained`` from a local directory.

    Guarantees a pad token (falls back to eos) because batching code relies on it.
    """
    path = Path(path_or_name)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path_or_name!r}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer at {path_or_name!r} has neither pad nor eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
