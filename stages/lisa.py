"""Stage `lisa`: compress the pipeline's final policy with LiSA (shared attention scores between layers).

Which policy: the PPO-with-GRAM-reward policy (`--ppo` folder's model) if its gate passed, else the
SFT policy (`--sft`); `source` in metrics.json says which and why. Data: the policy's own domain,
`format_example(prompt, response)` of the SFT demonstrations (`--train` for fitting LiSA, `--val`
for every perplexity), tokenised as bos + ids + eos and cut to `lisa.max_length`.

Steps (all knobs in the `lisa` params block; each step is a function of `pipelines.compression.recipe`,
which `alignflow lisa` runs too):
  (a) analysis: attention similarity of adjacent layers on a batch of val sequences (same-index
      vs best head matching; plots/similarity_grid.png) and per-layer sensitivity to naive sharing
      (plots/sensitivity.png);
  (b) greedy deepest-first layer selection under the perplexity budget (`select_layers`), each tried
      layer trained `lisa.train.max_steps` steps; log in plots/selection.csv. The default objective is
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
  (e) save with `save_lisa_model` (+ tokenizer) to `model/` in `--out`, reload with `load_lisa_model`
      and check the logits are bit-identical.

If no layer meets the budget the stage still writes a loadable LiSA model -- the `full` ablation on
the deepest layer, flagged `saved_fallback` -- so the registered artifact always exists; its gate
fails. Published as `policy-lisa`; gate: at least one layer replaced, val-ppl increase within the
budget, and an exact save/load round trip (metric `fraction_layers_replaced`, higher is better).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from alignflow.runtime.errors import ParamsError
from alignflow.runtime.flavours import log_stage_model
from alignflow.runtime.gates import Provenance, file_eval_set, lisa_gate
from alignflow.runtime.stage import StageContext, stage_main
from alignflow.runtime.threads import capped_threads
from pipelines.compression import recipe
from pipelines.compression.costs import lisa_report
from pipelines.compression.families import family_of
from pipelines.compression.lisa import MODES
from pipelines.compression.objective import perplexity
from pipelines.compression.texts import policy_sequences
from pipelines.compression.train import LisaTrainConfig, lisa_config_from_block
from pipelines.evaluation.plots import write_csv
from pipelines.models.causal_lm import load_causal_lm
from pipelines.models.tokenizer import load_tokenizer
from pipelines.training.distributed import ranks
from pipelines.training.rng import set_seed

KEYS = {"threads", "max_length", "n_train", "n_val", "eval_batch_size", "analysis", "budget", "rank", "mode",
        "align_heads", "train", "throughput"}
_r, _finite = recipe.rounded, recipe.finite


# ---- params ---------------------------------------------------------------------------------------
def _int(p: dict, key: str, low: int, where: str = "lisa") -> int:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ParamsError(f"params.yaml: {where}.{key} must be an integer >= {low}, got {value!r}")
    return value


def _settings(p: dict, seed: int) -> tuple[dict, LisaTrainConfig]:
    """The `lisa` block, checked, and its training config: a missing, unknown or out-of-range knob is a ParamsError."""
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
    an, tp = p["analysis"], p["throughput"]
    if not all(isinstance(b, dict) for b in (an, tp)):
        raise ParamsError("params.yaml: lisa.analysis and lisa.throughput must be mappings")
    if an.get("metric") not in ("cosine", "js"):
        raise ParamsError(f"params.yaml: lisa.analysis.metric must be cosine or js, got {an.get('metric')!r}")
    s["analysis"] = {"n_seqs": _int(an, "n_seqs", 1, "lisa.analysis"), "metric": an["metric"]}
    try:
        cfg = lisa_config_from_block(p["train"], seed, "lisa.train", progress=True)
        seq_lens = [int(n) for n in tp["seq_lens"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: lisa.train / lisa.throughput: {exc}") from exc
    if not 1 <= len(seq_lens) <= 4 or min(seq_lens) < 1:
        raise ParamsError(f"params.yaml: lisa.throughput.seq_lens must hold 1-4 positive lengths, got {seq_lens}")
    s["throughput"] = {"seq_lens": seq_lens, **{k: _int(tp, k, low, "lisa.throughput") for k, low in
                                                (("decode_tokens", 1), ("batch_size", 1), ("warmup", 0),
                                                 ("repeats", 1), ("threads", 1))}}
    return s, cfg


# ---- inputs ---------------------------------------------------------------------------------------
def choose_policy(ppo_dir: Path, sft_model: Path) -> tuple[str, Path, str]:
    """(source name, checkpoint folder, why): PPO-GRAM (`ppo_dir`/model) if its gate passed, else SFT."""
    metrics = ppo_dir / "metrics.json"
    if not metrics.is_file():
        return "sft", sft_model, f"{ppo_dir.name}/{metrics.name} not found; using the SFT policy"
    try:
        gate = json.loads(metrics.read_text(encoding="utf-8")).get("gate") or {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics}: not valid JSON: {exc}") from exc
    if not gate.get("passed"):
        return "sft", sft_model, f"ppo_gram gate not passed ({gate.get('reason', 'no reason given')}); using SFT"
    if not (ppo_dir / "model").is_dir():
        raise FileNotFoundError(f"{ppo_dir / 'model'}: ppo_gram gate passed but its model folder is missing")
    return "ppo_gram", ppo_dir / "model", "ppo_gram gate passed"


def _relative(ctx: StageContext, path: Path) -> str:
    return path.relative_to(ctx.root).as_posix()


def run(ctx: StageContext) -> None:
    ctx.use_seed("lisa_seed")
    s, cfg = _settings(ctx.block("lisa"), ctx.seed)
    torch.set_num_threads(capped_threads(s["threads"]))
    set_seed(ctx.seed)
    source, model_dir, source_reason = choose_policy(ctx.input("ppo"), ctx.input("sft"))
    model, tokenizer = load_causal_lm(str(model_dir)), load_tokenizer(str(model_dir))
    n_layers = len(family_of(model).layers(model))
    if n_layers < 2:
        raise ParamsError(f"{model_dir}: LiSA needs at least 2 layers, the policy has {n_layers}")
    tp = {**s["throughput"], "threads": capped_threads(s["throughput"]["threads"])}  # timings at the threads it got
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if limit and max(tp["seq_lens"]) + tp["decode_tokens"] > limit:
        raise ParamsError(f"params.yaml: lisa.throughput: seq_len + decode_tokens must be <= the policy's "
                          f"max_position_embeddings ({limit}), got {max(tp['seq_lens'])} + {tp['decode_tokens']}")
    files = {"train": ctx.input("train"), "val": ctx.input("val")}
    train = policy_sequences(files["train"], tokenizer, s["max_length"], s["n_train"])
    val = policy_sequences(files["val"], tokenizer, s["max_length"], s["n_val"])
    for split, context in (("train", "training"), ("val", "validation")):
        ctx.log_dataset(files[split], context, f"sft_{split}")
    eval_bs, budget = s["eval_batch_size"], s["budget"]
    out = ctx.output("out")
    plots = out / "plots"
    timings: dict[str, float] = {}

    # (a) analysis: which adjacent layers attend alike, and which layers matter
    clock = time.perf_counter()
    analysis = recipe.analyze(model, val[: s["analysis"]["n_seqs"]], val, plots, metric=s["analysis"]["metric"],
                              batch_size=eval_bs, seed=ctx.seed)
    similarity, sensitivity = analysis["similarity"], analysis["sensitivity"]
    if sensitivity is None:
        raise ValueError(f"{model_dir}: {analysis['note']}")
    write_csv(recipe.similarity_rows(similarity, sensitivity), plots / "similarity.csv",
              ["layer", "same_index", "matched", "sensitivity"])
    pairs, base_ppl = similarity["pairs"], sensitivity["base_ppl"]
    timings["analysis"] = time.perf_counter() - clock

    # (b) greedy deepest-first selection under the budget
    clock = time.perf_counter()
    selection, log = recipe.compress(model, train, val, budget=budget, rank=s["rank"], mode=s["mode"],
                                     train_config=cfg, align_heads=s["align_heads"], eval_batch_size=eval_bs)
    write_csv([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in log],
              plots / "selection.csv", ["layer", "ppl", "threshold", "ppl_increase", "accepted"])
    selected = sorted(selection.layers)
    timings["selection"] = time.perf_counter() - clock

    # (c) ablations on the selected set (deepest layer alone if nothing was selected)
    clock = time.perf_counter()
    ablation_layers = selected or [n_layers - 1]
    ablations, ablation_models = recipe.ablate(model, ablation_layers, train, val, base_ppl, rank=s["rank"],
                                               train_config=cfg, align_heads=s["align_heads"],
                                               eval_batch_size=eval_bs, seed=ctx.seed, context_len=s["max_length"])
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

    if not ranks().is_main:
        # Under several ranks the training above was data-parallel; what follows only measures this
        # machine and writes the output, which is rank 0's job (measuring on every rank at once would
        # share the cores and slow rank 0's numbers down).
        return

    # (d) throughput: base with its default attention and with eager, vs LiSA
    clock = time.perf_counter()
    default_attn = model.config._attn_implementation
    speed, csv_rows = recipe.throughput({"base": model, "base_eager": recipe.eager_copy(model), "lisa": final}, tp,
                                        seed=ctx.seed)
    write_csv(csv_rows, ctx.machine_dir() / "throughput.csv", list(csv_rows[0]))
    timings["throughput"] = time.perf_counter() - clock

    # (e) save, reload, compare
    clock = time.perf_counter()
    roundtrip = recipe.save_verified(final, out / "model", tokenizer, *analysis["batch"])
    timings["save_reload"] = time.perf_counter() - clock

    # (f) metrics and gate
    ppl_increase = lisa_ppl / base_ppl - 1.0
    fraction = len(selected) / n_layers
    measured_on = f"{file_eval_set(ctx.root, _relative(ctx, files['val']), len(val))} source={source}"
    metrics = {
        "source": source, "source_reason": source_reason, "source_path": _relative(ctx, model_dir),
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
        "train_steps_per_trial": cfg.max_steps,
        "train_objective": {"lm_weight": cfg.lm_weight, "distill_weight": cfg.distill_weight},
        "gate": lisa_gate(len(selected), n_layers, base_ppl, lisa_ppl, budget, roundtrip,
                          Provenance(ctx.profile, measured_on)),
    }
    ctx.write_machine_facts({"throughput/base_attn_implementation": default_attn, "throughput/threads": tp["threads"],
                             **speed, "seconds": {k: round(v, 2) for k, v in timings.items()}})
    ctx.write_metrics(out, metrics)
    rel = _relative(ctx, ctx.output_path("out"))
    log_stage_model(ctx, out / "model", ctx.root / rel / "model")
    ctx.log_artifacts_on_success(f"{rel}/plots", "plots")


if __name__ == "__main__":
    stage_main("lisa", run, blocks=("lisa_seed", "lisa"), inputs=("sft", "ppo", "train", "val"), outputs=("out",))
