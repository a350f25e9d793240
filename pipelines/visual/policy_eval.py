"""What the visual policy reads and how it is scored: tokenizer texts, held-out prompts, oracle metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from pipelines.data.jsonl import read_jsonl
from pipelines.evaluation.bootstrap import bootstrap_mean_ci

from .oracle import oracle_scores

# every world file whose texts the policy will see (so no word falls apart into bytes)
TOKENIZER_FILES = ("sft.jsonl", "visual_pool.jsonl", "caption_pool.jsonl", "text_pool.jsonl")


def tokenizer_texts(world_dir: Path) -> Iterator[str]:
    """Every prompt and response of the world's training files."""
    for name in TOKENIZER_FILES:
        for rec in read_jsonl(Path(world_dir) / name):
            yield from (rec[k] for k in ("prompt", "response", "chosen", "rejected") if rec.get(k))


def held_out_prompts(world_dir: Path, n: int) -> list[dict]:
    """Held-out visual prompts with a scene graph (real test pairs have none: then the best-of-n prompts)."""
    graded = [r for r in read_jsonl(Path(world_dir) / "visual_test.jsonl") if (r.get("spec") or {}).get("scene")]
    return (graded or read_jsonl(Path(world_dir) / "bon_prompts.jsonl"))[: int(n)]


def greedy_metrics(held_out: Sequence[dict], answers: Sequence[str], n_boot: int, seed: int) -> dict:
    """Oracle hallucination rate, recall and gold of the answers with 95% CIs, and per prompt family."""
    scores = oracle_scores(list(held_out), list(answers))
    metrics: dict = {}
    for key, values in scores.items():
        mean, low, high = bootstrap_mean_ci(values, n_boot, seed)
        metrics.update({f"greedy/{key}": round(mean, 5), f"greedy/{key}_ci95_low": round(low, 5),
                        f"greedy/{key}_ci95_high": round(high, 5)})
    for fam in sorted({r["family"] for r in held_out}):
        idx = [i for i, r in enumerate(held_out) if r["family"] == fam]
        metrics[f"greedy/family/{fam}/hallucination_rate"] = round(float(scores["hallucination_rate"][idx].mean()), 5)
        metrics[f"greedy/family/{fam}/recall"] = round(float(scores["recall"][idx].mean()), 5)
    return metrics
