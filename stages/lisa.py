"""Stage `lisa`: compress the pipeline's final policy with LiSA (shared attention scores between layers).

Which policy: the PPO-with-GRAM-reward policy (`models/ppo_gram/model`) if its gate passed, else the
SFT policy (`models/sft/model`); `source` in metrics.json says which and why. Data: the policy's own
domain, `format_example(prompt, response)` of the SFT demonstrations (train split for fitting LiSA,
val split for every perplexity), tokenised as bos + ids + eos and cut to `lisa.max_length`.

Steps (all knobs in the `lisa` params block):
  (a) analysis: attention similarity of adjacent layers on a batch of val sequences (same-index
      vs best head matching; plots/similarity_grid.png) and per-layer sensitivity to naive sharing
      (plots/sensitivity.png);
  (b) greedy deepest-first layer selection under the perplexity budget (`select_layers`), each tried
      layer trained `lisa.train.steps` steps; log in plots/selection.csv. The default objective is
      attention distillation only (lm_weight 0): LiSA learns to reproduce the policy's own attention,
      so the val-ppl change measures what the compression costs. With the LM loss the LiSA parameters
      also act as a small fine-tuning adapter on the policy's domain and can push val ppl well *below*
      the base policy's, which makes the budget check say little about the compression itself;
  (c) ablations on the selected layers (on the deepest layer alone if none was selected): share,
      align, lowrank, full, each from the base policy with the same training steps;
  (d) CPU throughput, prefill and greedy decode, base (default attention and eager) vs LiSA, with the
      benchmark's measuring code (`pipelines.compression.throughput`); tokens/s and ratios depend on
      the machine, so they and the step timings go to `reports/machine/lisa/` (facts.json,
      throughput.csv) and MLflow, not to the tracked output;
  (e) save with `save_lisa_model` (+ tokenizer) to models/lisa/model, reload with `load_lisa_model`
      and check the logits are bit-identical.

If no layer meets the budget the stage still writes a loadable LiSA model -- the `full` ablation on
the deepest layer, flagged `saved_fallback` -- so the registered artifact always exists; its gate
fails. Published as `policy-lisa`; gate: at least one layer replaced, val-ppl increase within the
budget, and an exact save/load round trip (metric `fraction_layers_replaced`, higher is better).
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.gates import Provenance, file_eval_set, lisa_gate
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.compression.analysis import (head_permutations, layer_pair_similarity, layer_sensitivity,
                                            plot_similarity_grid, plot_sensitivity)
from pipelines.compression.families import family_of
from pipelines.compression.io import load_lisa_model, save_lisa_model
from pipelines.compression.lisa import MODES, apply_lisa, lisa_report
from pipelines.compression.objective import make_batches, pad_id, perplexity
from pipelines.compression.select import select_layers
from pipelines.compression.throughput import measure_throughput
from pipelines.compression.train import LisaTrainConfig, train_lisa
from pipelines.data.jsonl import read_jsonl
from pipelines.data.template import format_example
from pipelines.evaluation.plots import write_csv
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.rng import set_seed

PPO_DIR, PPO_METRICS, SFT_DIR = "models/ppo_gram/model", "models/ppo_gram/metrics.json", "models/sft/model"
DATA = {"train": "data/world/sft_train.jsonl", "val": "data/world/sft_val.jsonl"}
ABLATIONS = ("share", "align", "lowrank", "full")
KEYS = {"threads", "max_length", "n_train", "n_val", "eval_batch_size", "analysis", "budget", "rank", "mode",
        "align_heads", "train", "throughput"}


# ---- params ---------------------------------------------------------------------------------------
def _int(p: dict, key: str, low: int, where: str = "lisa") -> int:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParamsError(f"params.yaml: {where}.{key} must be an integer >= {low}, got {value!r}")
    return value


def _settings(p: dict) -> dict:
    """The `lisa` block, checked: a missing, unknown or out-of-range knob is a ParamsError."""
    missing, unknown = sorted(KEYS - set(p)), sorted(set(p) - KEYS)
    if missing or unknown:
        raise ParamsError(f"params.yaml: lisa: missing keys {missing}, unknown keys {unknown}")
    s = {k: _int(p, k, 1) for k in ("threads", "n_train", "n_val", "eval_batch_size")}
    s["max_length"] = _int(p, "max_length", 2)
    budget = p["budget"]
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise ParamsError(f"params.yaml: lisa.budget must be a number >= 0, got {budget!r}")
    s["budget"] = float(budget)
    if p["rank"] is not None:
        _int(p, "rank", 1)
    s["rank"] = p["rank"]
    if p["mode"] not in MODES:
        raise ParamsError(f"params.yaml: lisa.mode must be one of {list(MODES)}, got {p['mode']!r}")
    s["mode"], s["align_heads"] = p["mode"], bool(p["align_heads"])
    an, tr, tp = p["analysis"], p["train"], p["throughput"]
    if not all(isinstance(b, dict) for b in (an, tr, tp)):
        raise ParamsError("params.yaml: lisa.analysis, lisa.train and lisa.throughput must be mappings")
    if an.get("metric") not in ("cosine", "js"):
        raise ParamsError(f"params.yaml: lisa.analysis.metric must be cosine or js, got {an.get('metric')!r}")
    s["analysis"] = {"n_seqs": _int(an, "n_seqs", 1, "lisa.analysis"), "metric": an["metric"]}
    try:
        s["train"] = {"steps": _int(tr, "steps", 0, "lisa.train"),
                      "batch_size": _int(tr, "batch_size", 1, "lisa.train"),
                      "lr": float(tr["lr"]), "lm_weight": float(tr["lm_weight"]),
                      "distill_weight": float(tr["distill_weight"])}
        seq_lens = [int(n) for n in tp["seq_lens"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: lisa.train / lisa.throughput: {exc!r}") from exc
    if s["train"]["lm_weight"] < 0 or s["train"]["distill_weight"] < 0 or \
            s["train"]["lm_weight"] + s["train"]["distill_weight"] <= 0:
        raise ParamsError("params.yaml: lisa.train: lm_weight and distill_weight must be >= 0, not both 0")
    if not 1 <= len(seq_lens) <= 4 or min(seq_lens) < 1:
        raise ParamsError(f"params.yaml: lisa.throughput.seq_lens must hold 1-4 positive lengths, got {seq_lens}")
    s["throughput"] = {"seq_lens": seq_lens, **{k: _int(tp, k, low, "lisa.throughput") for k, low in
                                                (("decode_tokens", 1), ("batch_size", 1), ("warmup", 0),
                                                 ("repeats", 1), ("threads", 1))}}
    return s


# ---- inputs ---------------------------------------------------------------------------------------
def choose_policy(root: Path) -> tuple[str, Path, str]:
    """(source name, checkpoint folder, why): PPO-GRAM if its gate passed, else SFT."""
    metrics = root / PPO_METRICS
    if not metrics.is_file():
        return "sft", root / SFT_DIR, f"{PPO_METRICS} not found; using the SFT policy"
    try:
        gate = json.loads(metrics.read_text(encoding="utf-8")).get("gate") or {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics}: not valid JSON: {exc}") from exc
    if not gate.get("passed"):
        return "sft", root / SFT_DIR, f"ppo_gram gate not passed ({gate.get('reason', 'no reason given')}); using SFT"
    if not (root / PPO_DIR).is_dir():
        raise FileNotFoundError(f"{root / PPO_DIR}: ppo_gram gate passed but its model folder is missing")
    return "ppo_gram", root / PPO_DIR, "ppo_gram gate passed"


def policy_sequences(path: Path, tokenizer, max_length: int, limit: int) -> list[list[int]]:
    """bos + tokens(format_example(prompt, response)) + eos, cut to max_length, for the first `limit` rows."""
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


# ---- helpers --------------------------------------------------------------------------------------
def _finite(value):
    """JSON/MLflow-safe number: NaN/inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _r(value: float, digits: int = 4):
    return _finite(round(float(value), digits)) if value is not None else None


@torch.no_grad()
def _logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def _train_config(s: dict, seed: int) -> LisaTrainConfig:
    t = s["train"]
    return LisaTrainConfig(steps=t["steps"], batch_size=t["batch_size"], lr=t["lr"], seed=seed,
                           lm_weight=t["lm_weight"], distill_weight=t["distill_weight"], progress=True)


def run(ctx: StageContext) -> None:
    s = _settings(ctx.block("lisa"))
    torch.set_num_threads(s["threads"])
    set_seed(ctx.seed)
    source, model_dir, source_reason = choose_policy(ctx.root)
    model, tokenizer = load_causal_lm(str(model_dir)), load_tokenizer(str(model_dir))
    adapter = family_of(model)
    n_layers = len(adapter.layers(model))
    if n_layers < 2:
        raise ParamsError(f"{model_dir}: LiSA needs at least 2 layers, the policy has {n_layers}")
    tp = s["throughput"]
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if limit and max(tp["seq_lens"]) + tp["decode_tokens"] > limit:
        raise ParamsError(f"params.yaml: lisa.throughput: seq_len + decode_tokens must be <= the policy's "
                          f"max_position_embeddings ({limit}), got {max(tp['seq_lens'])} + {tp['decode_tokens']}")
    train = policy_sequences(ctx.root / DATA["train"], tokenizer, s["max_length"], s["n_train"])
    val = policy_sequences(ctx.root / DATA["val"], tokenizer, s["max_length"], s["n_val"])
    for split, context in (("train", "training"), ("val", "validation")):
        ctx.log_dataset(ctx.root / DATA[split], context, f"sft_{split}")
    pad, eval_bs, budget = pad_id(model), s["eval_batch_size"], s["budget"]
    cfg = _train_config(s, ctx.seed)
    out = ctx.output("models/lisa")
    plots = out / "plots"
    timings: dict[str, float] = {}

    # (a) analysis: which adjacent layers attend alike, and which layers matter
    clock = time.perf_counter()
    ids, mask = make_batches(val[: s["analysis"]["n_seqs"]], s["analysis"]["n_seqs"], pad)[0]
    similarity = layer_pair_similarity(model, ids, mask, metric=s["analysis"]["metric"])
    plot_similarity_grid(similarity, plots / "similarity_grid.png")
    sensitivity = layer_sensitivity(model, val, batch_size=eval_bs, seed=ctx.seed)
    plot_sensitivity(sensitivity, plots / "sensitivity.png")
    pairs = similarity["pairs"]
    write_csv([{"layer": p["layer"], "same_index": round(p["same_index"], 4), "matched": round(p["matched"], 4),
                "sensitivity": _r(sensitivity["relative_increase"][p["layer"]])} for p in pairs],
              plots / "similarity.csv", ["layer", "same_index", "matched", "sensitivity"])
    base_ppl = sensitivity["base_ppl"]
    timings["analysis"] = time.perf_counter() - clock

    # (b) greedy deepest-first selection under the budget
    clock = time.perf_counter()
    selection = select_layers(model, train, val, budget=budget, rank=s["rank"], mode=s["mode"], train_config=cfg,
                              align_heads=s["align_heads"], eval_batch_size=eval_bs)
    log = [{**row, "ppl_increase": row["ppl"] / selection.base_ppl - 1.0} for row in selection.log]
    write_csv([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in log],
              plots / "selection.csv", ["layer", "ppl", "threshold", "ppl_increase", "accepted"])
    selected = sorted(selection.layers)
    timings["selection"] = time.perf_counter() - clock

    # (c) ablations on the selected set (deepest layer alone if nothing was selected)
    clock = time.perf_counter()
    ablation_layers = selected or [n_layers - 1]
    permutations = None
    if s["align_heads"]:  # the same head matching `select_layers` starts from: the first eval batch
        permutations = head_permutations(layer_pair_similarity(model, *make_batches(val, eval_bs, pad)[0]))
    ablations, ablation_models = {}, {}
    for mode in ABLATIONS:
        trial = apply_lisa(copy.deepcopy(model), ablation_layers, rank=s["rank"], mode=mode,
                           permutations=permutations if mode in ("full", "align") else None, seed=ctx.seed)
        train_lisa(trial, train, cfg, teacher=model if cfg.distill_weight > 0 else None)
        ppl = perplexity(trial, val, batch_size=eval_bs, seed=ctx.seed)
        report = lisa_report(trial, context_len=s["max_length"])
        ablations[mode] = {"val_ppl": ppl, "ppl_increase": ppl / base_ppl - 1.0,
                           "qk_compression_ratio": report["qk_compression_ratio"],
                           "lisa_parameters": report["lisa_parameter_count"]}
        ablation_models[mode] = trial
    write_csv([{"mode": m, **{k: _r(v) for k, v in a.items()}} for m, a in ablations.items()],
              plots / "ablation.csv", ["mode", "val_ppl", "ppl_increase", "qk_compression_ratio", "lisa_parameters"])
    timings["ablations"] = time.perf_counter() - clock

    # the model that ships: the selection's, or (nothing selected) the deepest-layer `full` ablation
    fallback = not selected
    final = ablation_models["full"] if fallback else selection.model
    final.eval()
    lisa_ppl = ablations["full"]["val_ppl"] if fallback else perplexity(final, val, batch_size=eval_bs, seed=ctx.seed)
    report = lisa_report(final, context_len=s["max_length"])
    del ablation_models

    # (d) throughput: base with its default attention and with eager, vs LiSA
    clock = time.perf_counter()
    default_attn = model.config._attn_implementation
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    rows = measure_throughput({"base": model, "base_eager": eager, "lisa": final}, tp["seq_lens"],
                              batch_size=tp["batch_size"], decode_tokens=tp["decode_tokens"], warmup=tp["warmup"],
                              repeats=tp["repeats"], threads=tp["threads"], seed=ctx.seed)
    del eager
    throughput = {"throughput/base_attn_implementation": default_attn, "throughput/threads": tp["threads"]}
    csv_rows = []
    for row in rows:
        key = f"throughput/seq{row['seq_len']}"
        flat = {"seq_len": row["seq_len"]}
        for phase in ("prefill", "decode"):
            tok_s = row[f"{phase}_tok_s"]
            for name, value in tok_s.items():
                flat[f"{phase}_tok_s_{name}"] = round(value, 2)
            flat[f"{phase}_ratio"] = round(tok_s["lisa"] / tok_s["base"], 4)
            flat[f"{phase}_ratio_vs_eager"] = round(tok_s["lisa"] / tok_s["base_eager"], 4)
        throughput.update({f"{key}/{k}": v for k, v in flat.items() if k != "seq_len"})
        csv_rows.append(flat)
    write_csv(csv_rows, ctx.machine_dir() / "throughput.csv", list(csv_rows[0]))
    timings["throughput"] = time.perf_counter() - clock

    # (e) save, reload, compare
    clock = time.perf_counter()
    save_lisa_model(final, out / "model")
    tokenizer.save_pretrained(str(out / "model"))
    reloaded = load_lisa_model(out / "model")
    roundtrip = bool(torch.equal(_logits(final, ids, mask), _logits(reloaded, ids, mask)))
    timings["save_reload"] = time.perf_counter() - clock

    # (f) metrics and gate
    ppl_increase = lisa_ppl / base_ppl - 1.0
    fraction = len(selected) / n_layers
    measured_on = f"{file_eval_set(ctx.root, DATA['val'], len(val))} source={source}"
    metrics = {
        "source": source, "source_reason": source_reason, "source_path": str(model_dir.relative_to(ctx.root)),
        "n_layers": n_layers, "n_train_seqs": len(train), "n_val_seqs": len(val), "budget": budget,
        "layers_replaced": selected, "fraction_layers_replaced": round(fraction, 4),
        "saved_layers": list(report["layers"]), "saved_fallback": fallback,
        "mode": report["mode"], "rank": report["rank"], "ffn_hidden": report["ffn_hidden"],
        "qk_compression_ratio": _r(report["qk_compression_ratio"]), "qk_flop_ratio": _r(report["qk_flop_ratio"]),
        "qk_flop_context_len": report["context_len"],
        "lisa_parameters": report["lisa_parameter_count"], "total_parameters": report["total_parameters"],
        "lisa_trainable_fraction": _finite(report["trainable_fraction"]),
        "key_cache_per_token_original": report["key_cache_per_token_original"],
        "key_cache_per_token_lisa": report["key_cache_per_token_lisa"],
        "base_val_ppl": _r(base_ppl), "lisa_val_ppl": _r(lisa_ppl), "ppl_increase": _r(ppl_increase, 5),
        "roundtrip_identical": roundtrip,
        "similarity/metric": similarity["metric"],
        "similarity/same_index_mean": _r(sum(p["same_index"] for p in pairs) / len(pairs)),
        "similarity/matched_mean": _r(sum(p["matched"] for p in pairs) / len(pairs)),
        **{f"similarity/L{p['layer']}/same_index": _r(p["same_index"]) for p in pairs},
        **{f"similarity/L{p['layer']}/matched": _r(p["matched"]) for p in pairs},
        **{f"sensitivity/L{layer}": _r(value) for layer, value in enumerate(sensitivity["relative_increase"])
           if layer > 0},
        "selection/log": [{k: (_r(v, 5) if isinstance(v, float) else v) for k, v in row.items()} for row in log],
        "ablation/layers": ablation_layers, "ablation/on_deepest_only": fallback,
        **{f"ablation/{m}/{k}": (_r(v, 5) if isinstance(v, float) else v) for m, a in ablations.items()
           for k, v in a.items()},
        "train_steps_per_trial": s["train"]["steps"],
        "train_objective": {"lm_weight": cfg.lm_weight, "distill_weight": cfg.distill_weight},
        "gate": lisa_gate(len(selected), n_layers, base_ppl, lisa_ppl, budget, roundtrip,
                          Provenance(ctx.profile, measured_on)),
    }
    ctx.write_machine_facts({**throughput, "seconds": {k: round(v, 2) for k, v in timings.items()}})
    ctx.write_metrics(out, metrics)
    ctx.log_artifacts_on_success("models/lisa/model", "model")
    ctx.log_artifacts_on_success("models/lisa/plots", "plots")


if __name__ == "__main__":
    stage_main("lisa", run)
