"""Token sequences LiSA is fitted and measured on: from text files, chat records, or random ids.

Llama: bos + text + eos; BERT: the tokenizer's own [CLS] ... [SEP]; every sequence cut to
`max_length` and kept only with at least 2 tokens. Random ids give a structure-only analysis (how
attention maps relate across layers on arbitrary input), not a statement about language quality.
Problems raise ValueError (or FileNotFoundError) naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.data.jsonl import read_jsonl
from pipelines.data.template import format_example, format_prompt


def read_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of a .txt (one per line) or .jsonl ("text", or "prompt" + "response") file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: texts file not found")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise ValueError(f"{path}: unsupported texts file (use .txt, one text per line, or .jsonl)")
    texts: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if limit is not None and len(texts) >= limit:
                    break
                line = line.strip()
                if not line:
                    continue
                if suffix == ".txt":
                    texts.append(line)
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {number}: not valid JSON ({exc.msg})") from exc
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    texts.append(row["text"])
                elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
                    response = row.get("response")
                    texts.append(format_example(row["prompt"], response) if isinstance(response, str)
                                 else format_prompt(row["prompt"]))
                else:
                    raise ValueError(f"{path}: line {number}: needs a 'text' field or 'prompt'/'response'")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the texts file: {exc}") from exc
    if not texts:
        raise ValueError(f"{path}: no texts in the file")
    return texts


def encode(tokenizer, texts: list[str], family: str, max_length: int) -> list[list[int]]:
    """Token ids per text (Llama: bos + text + eos; BERT: the tokenizer's own specials), cut to max_length."""
    rows = []
    for text in texts:
        if family == "llama":
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
            ids = ([bos] if bos is not None else []) + list(ids) + ([eos] if eos is not None else [])
        else:
            ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        rows.append(list(ids)[:max_length])
    return [r for r in rows if len(r) >= 2]


def random_sequences(model, n: int, length: int, seed: int) -> list[list[int]]:
    """n sequences of uniformly random token ids (at least 2 long), from a generator seeded by `seed`."""
    import torch

    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, max(2, length)), generator=gen).tolist()


def policy_sequences(path: Path, tokenizer, max_length: int, limit: int) -> list[list[int]]:
    """bos + tokens(format_example(prompt, response)) + eos, cut to max_length, for the first `limit` records."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = []
    for record in read_jsonl(path)[:limit]:
        if "prompt" not in record or "response" not in record:
            raise ValueError(f"{path}: every record needs 'prompt' and 'response'")
        ids = tokenizer(format_example(record["prompt"], record["response"]), add_special_tokens=False)["input_ids"]
        seq = ([bos] if bos is not None else []) + list(ids) + ([eos] if eos is not None else [])
        rows.append(seq[:max_length])
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        raise ValueError(f"{path}: no usable texts (need at least one record of >= 2 tokens)")
    return rows
