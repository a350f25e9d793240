"""Joint English+German subword vocabulary for CTC speech translation.

A Unigram model over SentencePiece-style pieces ("▁" marks a preceding space) with no
normaliser, so case and punctuation survive and `decode(encode(s)) == s` for any text made of
characters seen in training; sacreBLEU scores that detokenised text directly. The CTC blank has
id 0 because CTC losses and greedy decoders default to blank=0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BLANK, PAD, BOS, EOS, UNK = "<blank>", "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [BLANK, PAD, BOS, EOS, UNK]  # ids 0..4, in this order


class Vocab:
    """A trained `tokenizers.Tokenizer` with fixed special ids and exact detokenisation."""

    def __init__(self, tokenizer: Tokenizer):
        for i, tok in enumerate(SPECIALS):
            if tokenizer.token_to_id(tok) != i:
                raise ValueError(f"tokenizer must map {tok} to id {i}, got {tokenizer.token_to_id(tok)}")
        self.tokenizer = tokenizer
        self.blank_id, self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIALS))

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Subword ids without any special tokens (callers add <s>/</s> where they need them)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenised text; special ids (blank, pad, bos, eos) are dropped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: str | os.PathLike) -> Path:
        """Write tokenizer.json to `path` (a directory, or a file path ending in .json)."""
        path = Path(path)
        if path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True)
            path = path / "tokenizer.json"
        tmp = path.with_suffix(".json.tmp")
        self.tokenizer.save(str(tmp))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        return cls(Tokenizer.from_file(str(path)))


def train_vocab(texts: Iterable[str], vocab_size: int = 1000) -> Vocab:
    """Train a Unigram vocabulary on `texts` (pass both English and German sides)."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token=UNK,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return Vocab(_canonical(tok))


def _canonical(tok: Tokenizer, digits: int = 9) -> Tokenizer:
    """The same pieces in a reproducible order, so two runs on the same texts give the same ids.

    The Unigram trainer (tokenizers 0.2x) is not reproducible across processes: scores differ in
    their last bits (float sums in hash-map order), and the single characters it appends to cover the
    alphabet get made-up scores (1e-4 apart, down to a floor at the lowest score) in hash-set order.
    Scores are rounded, pieces sorted by (score descending, piece), and the appended characters --
    single characters whose score sits on that 1e-4 grid above the floor, wherever a real piece with an
    off-grid score falls between them -- are re-sorted by character onto the same scores. Specials
    keep ids 0..4.
    """
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    n = len(SPECIALS)
    rest = sorted(((piece, round(score, digits)) for piece, score in vocab[n:]), key=lambda x: (-x[1], x[0]))
    if rest:
        floor, step = rest[-1][1], 1e-4
        span = step * len(rest)

        def appended(piece: str, score: float) -> bool:
            above = score - floor
            return len(piece) == 1 and above <= span and abs(above - round(above / step) * step) < 1e-7

        slots = [i for i, (piece, score) in enumerate(rest) if appended(piece, score)]
        for i, piece in zip(slots, sorted(rest[i][0] for i in slots)):
            rest[i] = (piece, rest[i][1])
    data["model"]["vocab"] = [list(x) for x in vocab[:n]] + [list(x) for x in rest]
    return Tokenizer.from_str(json.dumps(data))
