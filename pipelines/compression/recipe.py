"""The LiSA recipe, step by step, shared by the `lisa` stage and `alignflow lisa analyze|compress`.

    analyze      attention similarity of adjacent layers (same-index vs best head matching) on one
                 batch, per-layer sensitivity to naive sharing; plots
    compress     greedy deepest-first layer selection under a perplexity budget (`select_layers`), or
                 an embedding-similarity budget for models without an LM head (`budget.py`)
    ablate       the modes share / align / lowrank / full on the same layers, same training
    throughput   CPU tokens/s, prefill and greedy decode, of several models (machine facts)
    save_verified  save a LiSA model (+ tokenizer), reload it, check the logits are bit-identical

Every step takes plain values (models, token sequences, folders, configs) and returns plain values;
the callers decide what becomes metrics, files or printed tables.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from pipelines.compression.analysis import (head_permutations, layer_pair_similarity, layer_sensitivity,
                                            plot_similarity_grid, plot_sensitivity)
from pipelines.compression.budget import DEFAULT_MIN_SIMILARITY
from pipelines.compression.costs import lisa_report
from pipelines.compression.io import load_lisa_model, save_lisa_model
from pipelines.compression.lisa import apply_lisa
from pipelines.compression.objective import forward, make_batches, pad_id, perplexity
from pipelines.compression.select import Selection, select_layers
from pipelines.compression.throughput import measure_throughput
from pipelines.compression.train import LisaTrainConfig, train_lisa

ABLATIONS = ("share", "align", "lowrank", "full")


def finite(value):
    """JSON/MLflow-safe number: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rounded(value, digits: int = 4):
    return finite(round(float(value), digits)) if value is not None else None


def analyze(model: nn.Module, similarity_seqs: Sequence[Sequence[int]], sensitivity_seqs: Sequence[Sequence[int]],
            plots: Path, *, metric: str, batch_size: int, seed: int, mask_token_id: int | None = None) -> dict:
    """Which adjacent layers attend alike (one batch of `similarity_seqs`) and which layers matter
    (perplexity over `sensitivity_seqs` when each layer naively shares its predecessor's attention).

    Returns {"similarity", "sensitivity" (None for a model without an LM head), "note" (why not),
    "batch" (the similarity batch: ids, mask), "written" (plot paths)}.
    """
    ids, mask = make_batches(similarity_seqs, len(similarity_seqs), pad_id(model))[0]
    similarity = layer_pair_similarity(model, ids, mask, metric=metric)
    written = [plot_similarity_grid(similarity, plots / "similarity_grid.png")]
    sensitivity, note = None, None
    try:
        sensitivity = layer_sensitivity(model, sensitivity_seqs, batch_size=batch_size, mask_token_id=mask_token_id,
                                        seed=seed)
    except ValueError as exc:  # e.g. a bare BertModel: no LM head, no perplexity
        note = f"no sensitivity: {exc}"
    if sensitivity is not None:
        written.append(plot_sensitivity(sensitivity, plots / "sensitivity.png"))
    return {"similarity": similarity, "sensitivity": sensitivity, "note": note, "batch": (ids, mask),
            "written": written}


def similarity_rows(similarity: dict, sensitivity: dict) -> list[dict]:
    """One row per adjacent pair: same-index and matched similarity, the layer's sensitivity."""
    return [{"layer": p["layer"], "same_index": round(p["same_index"], 4), "matched": round(p["matched"], 4),
             "sensitivity": rounded(sensitivity["relative_increase"][p["layer"]])} for p in similarity["pairs"]]


def compress(model: nn.Module, train: Sequence[Sequence[int]], val: Sequence[Sequence[int]], *, budget: float,
             rank: int | None, mode: str, train_config: LisaTrainConfig, align_heads: bool = True,
             eval_batch_size: int, min_similarity: float = DEFAULT_MIN_SIMILARITY) -> tuple[Selection, list[dict]]:
    """Greedy selection under the budget (perplexity with an LM head, `min_similarity` of the sentence
    embeddings without); returns the selection and its log, with `ppl_increase` added to perplexity rows."""
    selection = select_layers(model, train, val, budget=budget, rank=rank, mode=mode, train_config=train_config,
                              align_heads=align_heads, eval_batch_size=eval_batch_size, min_similarity=min_similarity)
    log = [{**row, "ppl_increase": row["ppl"] / selection.base_ppl - 1.0} if "ppl" in row else dict(row)
           for row in selection.log]
    return selection, log


def budget_summary(selection: Selection, n_layers: int) -> dict:
    """What the selection was held to and what the kept model measures: JSON-ready, for reports."""
    judge = selection.budget
    final = judge.measure(selection.model)
    facts = {"budget_metric": judge.metric, "threshold": judge.threshold, "num_layers": n_layers,
             "fraction_layers_replaced": len(selection.layers) / n_layers}
    if judge.metric == "ppl":
        return {**facts, "base_val_ppl": judge.base, "lisa_val_ppl": final["ppl"],
                "ppl_increase": final["ppl"] / judge.base - 1.0}
    return {**facts, "min_similarity": judge.threshold, "similarity": final["similarity"],
            "worst_sequence_similarity": final["min_similarity"], "token_similarity": final["token_similarity"],
            **judge.reference}


def ablate(model: nn.Module, layers: Sequence[int], train: Sequence[Sequence[int]], val: Sequence[Sequence[int]],
           base_ppl: float, *, rank: int | None, train_config: LisaTrainConfig, align_heads: bool,
           eval_batch_size: int, seed: int, context_len: int) -> tuple[dict, dict]:
    """Each mode of `ABLATIONS` on `layers`, from the base model with the same training.

    Returns ({mode: {val_ppl, ppl_increase, qk_compression_ratio, lisa_parameters}}, {mode: model}).
    With `align_heads`, FFN_heads starts from the head matching `select_layers` starts from (the first
    evaluation batch).
    """
    permutations = None
    if align_heads:
        permutations = head_permutations(layer_pair_similarity(model, *make_batches(val, eval_batch_size,
                                                                                    pad_id(model))[0]))
    results, models = {}, {}
    for mode in ABLATIONS:
        trial = apply_lisa(copy.deepcopy(model), layers, rank=rank, mode=mode,
                           permutations=permutations if mode in ("full", "align") else None, seed=seed)
        train_lisa(trial, train, train_config, teacher=model if train_config.distill_weight > 0 else None)
        ppl = perplexity(trial, val, batch_size=eval_batch_size, seed=seed)
        report = lisa_report(trial, context_len=context_len)
        results[mode] = {"val_ppl": ppl, "ppl_increase": ppl / base_ppl - 1.0,
                         "qk_compression_ratio": report["qk_compression_ratio"],
                         "lisa_parameters": report["lisa_parameter_count"]}
        models[mode] = trial
    return results, models


def throughput(models: Mapping[str, nn.Module], settings: Mapping, seed: int) -> tuple[dict, list[dict]]:
    """tokens/s of `models` (names "base", "base_eager", "lisa"), ratios LiSA / base per sequence length.

    `settings`: seq_lens, batch_size, decode_tokens, warmup, repeats, threads. Returns (flat facts keyed
    `throughput/seq<N>/...`, one CSV row per sequence length); both describe the machine.
    """
    rows = measure_throughput(models, settings["seq_lens"], batch_size=settings["batch_size"],
                              decode_tokens=settings["decode_tokens"], warmup=settings["warmup"],
                              repeats=settings["repeats"], threads=settings["threads"], seed=seed)
    facts, csv_rows = {}, []
    for row in rows:
        key = f"throughput/seq{row['seq_len']}"
        flat = {"seq_len": row["seq_len"]}
        for phase in ("prefill", "decode"):
            tok_s = row[f"{phase}_tok_s"]
            for name, value in tok_s.items():
                flat[f"{phase}_tok_s_{name}"] = round(value, 2)
            flat[f"{phase}_ratio"] = round(tok_s["lisa"] / tok_s["base"], 4)
            flat[f"{phase}_ratio_vs_eager"] = round(tok_s["lisa"] / tok_s["base_eager"], 4)
        facts.update({f"{key}/{k}": v for k, v in flat.items() if k != "seq_len"})
        csv_rows.append(flat)
    return facts, csv_rows


def eager_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` running eager attention (the fair speed baseline for LiSA's eager layers)."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    return eager


def _outputs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits, or the final hidden states of a model without an LM head (a bare BertModel)."""
    output = forward(model, ids, mask)
    logits = getattr(output, "logits", None)
    return output.last_hidden_state if logits is None else logits


def save_verified(model: nn.Module, folder: Path, tokenizer, ids: torch.Tensor, mask: torch.Tensor) -> bool:
    """Save `model` (and `tokenizer` if given) into `folder`; True iff a reload gives bit-identical logits
    (final hidden states for a model without an LM head)."""
    save_lisa_model(model, folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    reloaded = load_lisa_model(folder)
    with torch.no_grad():
        return bool(torch.equal(_outputs(model, ids, mask), _outputs(reloaded, ids, mask)))
