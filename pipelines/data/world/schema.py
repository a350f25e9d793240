"""Record schemas of the world's splits, checked before anything is written."""

from __future__ import annotations

from typing import Any

from .splits import SPLIT_NAMES, TRAIN_SPLITS

_PREFS = {"id": str, "family": str, "prompt": str, "chosen": str, "rejected": str, "spec": dict,
          "gold_chosen": float, "gold_rejected": float, "label_agrees_with_gold": (bool, type(None)),
          "chosen_error_type": str, "rejected_error_type": str}
_SFT = {"id": str, "family": str, "prompt": str, "response": str, "spec": dict, "gold": float, "error_type": str}
SCHEMAS: dict[str, dict[str, Any]] = {
    "unlabeled_pairs": {"id": str, "family": str, "prompt": str, "response_a": str, "response_b": str,
                        "spec": dict},
    "prefs_train": _PREFS, "prefs_test_id": _PREFS, "prefs_test_ood": _PREFS,
    "prefs_adapt_train": _PREFS, "prefs_adapt_test": _PREFS,
    "sft_train": _SFT, "sft_val": _SFT,
    "eval_prompts": {"id": str, "family": str, "prompt": str, "spec": dict},
    "corpus_train": {"text": str}, "corpus_val": {"text": str},
}


def _type_ok(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that bools are not ints and ints count as floats."""
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _check_record(split: str, index: int, record: Any) -> None:
    where = f"{split}[{index}]"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: record is {type(record).__name__}, expected dict")
    for key, kind in SCHEMAS[split].items():
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r}")
        value = record[key]
        if not _type_ok(value, kind if isinstance(kind, tuple) else (kind,)):
            raise ValueError(f"{where}: field {key!r} has type {type(value).__name__}")
    for key in ("prompt", "text"):
        if key in record and not record[key].strip():
            raise ValueError(f"{where}: field {key!r} is empty")
    for a, b in (("chosen", "rejected"), ("response_a", "response_b")):
        if a in record and record[a] == record[b]:
            raise ValueError(f"{where}: fields {a!r} and {b!r} are identical")


def validate_splits(splits: dict[str, list[dict]]) -> None:
    """Raise ValueError on a missing/unknown split, a malformed record or held-out prompt leakage."""
    missing = [name for name in SPLIT_NAMES if name not in splits]
    unknown = [name for name in splits if name not in SCHEMAS]
    if missing or unknown:
        raise ValueError(f"world splits: missing {missing}, unknown {unknown}")
    for split, records in splits.items():
        for index, record in enumerate(records):
            _check_record(split, index, record)
    train_prompts = {r["prompt"] for s in TRAIN_SPLITS if s != "corpus_train" for r in splits[s]}
    for split in SPLIT_NAMES:
        if split in TRAIN_SPLITS or split.startswith("corpus"):
            continue
        leaked = [r["prompt"] for r in splits[split] if r["prompt"] in train_prompts]
        if leaked:
            raise ValueError(f"{split}: {len(leaked)} prompts also appear in train splits, e.g. {leaked[0]!r}")
