"""`alignflow lisa`: LiSA attention analysis and compression for any local HF Llama or BERT checkpoint.

    alignflow lisa analyze  --model PATH [--texts FILE] [--out DIR] [--n-seqs N] [--max-length L] [--random-ids]
    alignflow lisa compress --model PATH --out DIR [--texts FILE] [--budget B | --min-similarity S] [--rank R]
                            [--max-steps S] [--random-ids]

PATH: a local Hugging Face checkpoint folder (config.json + weights) of the Llama family (e.g.
``LlamaForCausalLM``) or the BERT family (``BertForMaskedLM``, or a bare ``BertModel`` such as a
sentence encoder: it has no LM loss, so `analyze` reports no sensitivity and `compress` holds it to an
embedding-similarity budget instead of perplexity). It need not come from the pipeline.
A folder written by `compress` (it has lisa_config.json) can be analysed again.

Texts: ``--texts FILE`` is a .txt (one text per line) or a .jsonl (a "text" field, or "prompt" and
"response", rendered with the pipeline's chat template); without it, the pipeline's LM corpus
(data/world/corpus_val.jsonl, and corpus_train.jsonl for training) when run inside the project.
They are tokenised with the checkpoint's own tokenizer (Llama: bos + text + eos; BERT: the
tokenizer's [CLS] ... [SEP]), cut to --max-length (and to the model's max_position_embeddings).
A checkpoint without a tokenizer is an error unless ``--random-ids`` is given: then the sequences
are uniformly random token ids, a *structure-only* analysis (how the model's attention maps relate
across layers on arbitrary input); the perplexities it reports say nothing about language quality.

analyze: attention similarity of adjacent layers (same-index vs best head matching), per-layer
sensitivity to naive sharing; writes similarity_grid.png, sensitivity.png and analysis.json into
--out (default reports/lisa/<model folder name>) and prints a table.
compress: greedy deepest-first layer selection under the perplexity budget (--budget, models with an LM
head) or, for a model without one, while the mean cosine similarity of its mean-pooled sentence embeddings
to the original's on the validation texts stays >= --min-similarity (default 0.98); LiSA parameters trained
--max-steps steps per tried layer (default objective: attention distillation, i.e. LiSA learns to
reproduce the model's own attention); writes the compressed model to --out (load it with
`pipelines.compression.io.load_lisa_model`), its tokenizer, and compression.json, after checking that
a reload reproduces the logits exactly. Both commands run the steps of `pipelines.compression.recipe`,
the same functions the `lisa` stage runs; this module only reads arguments, finds texts and prints.
Exit codes: 0 done, 1 no layer met the budget (nothing
written), 2 bad input (missing path, no config.json, unsupported architecture, unreadable texts).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from alignflow.runtime.errors import AlignflowError
from pipelines.compression import checkpoint, texts as lisa_texts

CORPUS = {"train": "data/world/corpus_train.jsonl", "val": "data/world/corpus_val.jsonl"}
DEFAULT_BUDGET = 0.02  # max relative val-ppl increase, models with an LM head
DEFAULT_MIN_SIMILARITY = 0.98  # = pipelines.compression.budget's; spelt here so `alignflow --help` needs no torch


def _bad_input(fn, *args, **kwargs):
    """Call a pipelines loader; its ValueError / FileNotFoundError (bad user input) becomes an AlignflowError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise AlignflowError(str(exc)) from exc


def load_checkpoint(path: str | Path):
    """(model in float32 eval mode, its family adapter); AlignflowError naming the path otherwise."""
    return _bad_input(checkpoint.load_checkpoint, path)


def _default_corpus(split: str) -> Path | None:
    from alignflow.runtime.paths import repo_root

    try:
        path = repo_root() / CORPUS[split]
    except AlignflowError:
        return None
    return path if path.is_file() else None


class Inputs:
    """Where the token sequences come from, and the ids the objective needs."""

    def __init__(self, args, model, adapter):
        self.model_path = Path(args.model)
        self.model, self.family = model, adapter.name
        self.random_ids = bool(args.random_ids)
        self.tokenizer = None if self.random_ids else _bad_input(checkpoint.load_tokenizer_if_any, self.model_path)
        if self.tokenizer is None and not self.random_ids:
            raise AlignflowError(f"{self.model_path}: the checkpoint folder has no tokenizer; pass --random-ids "
                                 "for a structure-only analysis on random token ids")
        limit = getattr(model.config, "max_position_embeddings", None)
        self.max_length = min(args.max_length, int(limit)) if limit else args.max_length
        self.texts_arg = args.texts
        self.seed = args.seed
        self.mask_token_id, self.mask_source = self._mask_token()

    def _mask_token(self):
        if self.family != "bert":
            return None, None
        from pipelines.compression.budget import has_lm_head

        if self.tokenizer is not None:
            if self.tokenizer.mask_token_id is None and not has_lm_head(self.model):
                return None, "none (no LM head, no masked-LM loss)"
            if self.tokenizer.mask_token_id is None:
                raise AlignflowError(f"{self.model_path}: the tokenizer has no mask token; BERT's masked-LM "
                                     "perplexity needs one")
            return int(self.tokenizer.mask_token_id), "tokenizer"
        config_id = getattr(self.model.config, "mask_token_id", None)
        if config_id is not None:
            return int(config_id), "config"
        return int(self.model.config.vocab_size) - 1, "last vocabulary id (random ids, no tokenizer)"

    def source(self, split: str) -> str:
        """Where the texts of `split` come from, in words (a path, or the random-ids note)."""
        if self.random_ids:
            return "random token ids (structure-only)"
        if self.texts_arg:
            return str(self.texts_arg)
        path = _default_corpus(split)
        if path is None:
            raise AlignflowError("no --texts given and the pipeline corpus (data/world/corpus_*.jsonl) is not here; "
                                 "pass --texts FILE or --random-ids")
        return str(path)

    def sequences(self, split: str, n: int, n_val: int | None = None) -> list[list[int]]:
        """Up to n sequences of split "train" or "val". With --texts: the first n texts, or, when n_val is
        given (compress), validation = the last min(n_val, a quarter) texts and training = those before."""
        if self.random_ids:
            return lisa_texts.random_sequences(self.model, n, self.max_length, self.seed + (0 if split == "val" else 1))
        if self.texts_arg:
            texts = _bad_input(lisa_texts.read_texts, self.texts_arg)
            if n_val is not None:
                k = min(n_val, max(1, len(texts) // 4))
                texts = texts[-k:] if split == "val" else (texts[:-k] or texts)
            texts = texts[:n]
        else:
            texts = _bad_input(lisa_texts.read_texts, self.source(split), limit=n)
        rows = lisa_texts.encode(self.tokenizer, texts, self.family, self.max_length)
        vocab = int(self.model.config.vocab_size)
        top = max((max(r) for r in rows), default=-1)
        if top >= vocab:
            raise AlignflowError(f"{self.model_path}: its tokenizer produced id {top} >= the model's vocab_size "
                                 f"{vocab}; tokenizer and model do not match")
        if not rows:
            raise AlignflowError(f"{self.source(split)}: no text gives at least 2 tokens")
        return rows


# ---- commands ----------------------------------------------------------------------------------------
def _start(args) -> None:
    """Cheap checks before any model is loaded, and the thread count."""
    if args.texts and not args.random_ids and not Path(args.texts).is_file():
        raise AlignflowError(f"{args.texts}: texts file not found")
    if args.max_length < 2:
        raise AlignflowError(f"--max-length must be >= 2, got {args.max_length}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _default_out(model_path: str) -> Path:
    from alignflow.runtime.paths import repo_root

    try:
        base = repo_root()
    except AlignflowError:
        base = Path.cwd()
    return base / "reports" / "lisa" / Path(model_path).resolve().name


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _cmd_analyze(args) -> int:
    from pipelines.compression.recipe import analyze

    _start(args)
    model, adapter = load_checkpoint(args.model)
    inputs = Inputs(args, model, adapter)
    seqs = inputs.sequences("val", args.n_seqs)
    geometry = adapter.geometry(model)
    n_layers = len(adapter.layers(model))
    if n_layers < 2:
        raise AlignflowError(f"{args.model}: one layer only; there is no adjacent pair to compare")
    out = Path(args.out) if args.out else _default_out(args.model)
    out.mkdir(parents=True, exist_ok=True)
    result = analyze(model, seqs, seqs, out, metric=args.metric, batch_size=args.batch_size, seed=args.seed,
                     mask_token_id=inputs.mask_token_id)
    similarity, sensitivity, (_, mask) = result["similarity"], result["sensitivity"], result["batch"]
    written = list(result["written"])
    pairs = similarity["pairs"]
    report = {
        "model": str(Path(args.model).resolve()), "family": adapter.name, "model_class": type(model).__name__,
        "num_layers": n_layers, "num_heads": geometry.num_heads, "num_kv_heads": geometry.num_kv_heads,
        "head_dim": geometry.head_dim, "lisa_layers": list(getattr(getattr(model, "lisa_state", None), "layers", [])),
        "data": {"source": inputs.source("val"), "random_ids": inputs.random_ids, "n_seqs": len(seqs),
                 "max_length": inputs.max_length, "tokens": int(mask.sum()), "mask_token_id": inputs.mask_token_id,
                 "mask_token_source": inputs.mask_source},
        "similarity": {"metric": similarity["metric"],
                       "same_index_mean": sum(p["same_index"] for p in pairs) / len(pairs),
                       "matched_mean": sum(p["matched"] for p in pairs) / len(pairs),
                       "pairs": [{"layer": p["layer"], "same_index": p["same_index"], "matched": p["matched"],
                                  "permutation": p["permutation"], "matrix": p["matrix"].round(5).tolist()}
                                 for p in pairs]},
        "sensitivity": None if sensitivity is None else {
            "perturbation": sensitivity["perturbation"], "base_ppl": sensitivity["base_ppl"],
            "layers": sensitivity["layers"], "ppl": sensitivity["ppl"],
            "relative_increase": sensitivity["relative_increase"]},
        "note": result["note"],
    }
    (out / "analysis.json").write_text(json.dumps(_clean(report), indent=2) + "\n", encoding="utf-8")
    written.append(out / "analysis.json")
    _print_analysis(report, written)
    return 0


def _print_analysis(report: dict, written: list[Path]) -> None:
    data, sim, sens = report["data"], report["similarity"], report["sensitivity"]
    print(f"LiSA analysis: {report['model']} ({report['model_class']}, {report['num_layers']} layers x "
          f"{report['num_heads']} heads)")
    print(f"data: {data['n_seqs']} sequences, {data['tokens']} tokens (<= {data['max_length']} each) "
          f"from {data['source']}")
    if sens is not None:
        print(f"sensitivity = relative ppl increase when the layer shares layer-1's attention (base ppl "
              f"{sens['base_ppl']:.3f})")
    print(f"{'pair':>8} | {sim['metric'] + ' same-index':>18} {'matched':>8} | {'sensitivity':>11}")
    for pair in sim["pairs"]:
        layer = pair["layer"]
        value = sens["relative_increase"][layer] if sens is not None else None
        shown = "-" if value is None else f"{100 * value:+.2f}%"
        print(f"{'L' + str(layer - 1) + '->L' + str(layer):>8} | {pair['same_index']:>18.3f} {pair['matched']:>8.3f} "
              f"| {shown:>11}")
    print(f"{'mean':>8} | {sim['same_index_mean']:>18.3f} {sim['matched_mean']:>8.3f} |")
    if report["note"]:
        print(report["note"])
    print("wrote " + ", ".join(str(p) for p in written))


def _budgets(args, model) -> tuple[float, float]:
    """(perplexity budget, min similarity): each fits one kind of model, so naming the other is an error."""
    from pipelines.compression.budget import check_min_similarity, has_lm_head

    head = has_lm_head(model)
    if head and args.min_similarity is not None:
        raise AlignflowError(f"{args.model}: --min-similarity is the budget of models without an LM head; "
                             f"{type(model).__name__} has one and is held to a perplexity budget (--budget)")
    if not head and args.budget is not None:
        raise AlignflowError(f"{args.model}: {type(model).__name__} has no LM head, so no perplexity for --budget; "
                             f"its budget is --min-similarity (default {DEFAULT_MIN_SIMILARITY})")
    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    if budget < 0 or args.max_steps < 0:
        raise AlignflowError("--budget and --max-steps must be >= 0")
    min_similarity = DEFAULT_MIN_SIMILARITY if args.min_similarity is None else args.min_similarity
    return budget, _bad_input(check_min_similarity, min_similarity)


def _print_selection(log: list[dict], facts: dict) -> None:
    """One line per tried layer: the measured value against the threshold."""
    metric = facts["budget_metric"]
    label = "val ppl" if metric == "ppl" else "embedding similarity"
    for row in log:
        print(f"layer {row['layer']:>3}: {label} {row[metric]:.4f} (threshold {row['threshold']:.4f}) "
              f"{'accepted' if row['accepted'] else 'rejected'}")


def _outcome(facts: dict) -> str:
    """The kept model's quality against the original, in words."""
    if facts["budget_metric"] == "ppl":
        return (f"val ppl {facts['base_val_ppl']:.4f} -> {facts['lisa_val_ppl']:.4f} "
                f"({facts['ppl_increase']:+.2%})")
    return (f"sentence-embedding similarity to the original {facts['similarity']:.4f} (>= {facts['min_similarity']}; "
            f"worst text {facts['worst_sequence_similarity']:.4f}; unrelated texts "
            f"{facts['unrelated_similarity']:.4f})")


def _cmd_compress(args) -> int:
    from pipelines.atomic import atomic_dir
    from pipelines.compression.costs import lisa_report
    from pipelines.compression.io import CONFIG_NAME
    from pipelines.compression.objective import make_batches, pad_id
    from pipelines.compression.recipe import budget_summary, compress, save_verified
    from pipelines.compression.train import LisaTrainConfig

    _start(args)
    model_path, out = Path(args.model), Path(args.out)
    if (model_path / CONFIG_NAME).is_file():
        raise AlignflowError(f"{model_path}: already LiSA-compressed; compress its original checkpoint instead")
    model, adapter = load_checkpoint(model_path)
    if out.resolve() == model_path.resolve():
        raise AlignflowError(f"{out}: --out must differ from --model")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_NAME).is_file())):
        raise AlignflowError(f"{out}: exists and is not an earlier compress output; choose an empty or new folder")
    if args.rank is not None and args.rank < 1:
        raise AlignflowError(f"--rank must be >= 1, got {args.rank}")
    budget, min_similarity = _budgets(args, model)
    inputs = Inputs(args, model, adapter)
    val = inputs.sequences("val", args.n_val, n_val=args.n_val)
    train = inputs.sequences("train", args.n_train, n_val=args.n_val)
    cfg = _bad_input(LisaTrainConfig, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed, lm_weight=args.lm_weight, distill_weight=args.distill_weight,
                     mask_token_id=inputs.mask_token_id, progress=True)
    start = time.perf_counter()
    try:
        selection, _ = compress(model, train, val, budget=budget, rank=args.rank, mode=args.mode, train_config=cfg,
                                eval_batch_size=args.batch_size, min_similarity=min_similarity)
    except ValueError as exc:  # e.g. LM loss on a model without an LM head, both loss weights 0
        raise AlignflowError(f"{model_path}: {exc}") from exc
    n_layers = len(adapter.layers(model))
    facts = budget_summary(selection, n_layers)
    _print_selection(selection.log, facts)
    if not selection.layers:
        print(f"no layer stayed within the budget ({facts['budget_metric']} threshold {facts['threshold']:.4f}); "
              f"nothing written to {out}. Try a looser budget or more --max-steps.", file=sys.stderr)
        return 1
    final = selection.model.eval()
    report = lisa_report(final, context_len=inputs.max_length)
    ids, mask = make_batches(val[: args.batch_size], args.batch_size, pad_id(model))[0]
    with atomic_dir(out) as staged:
        identical = save_verified(final, staged, inputs.tokenizer, ids, mask)
        if not identical:
            raise AlignflowError(f"{out}: reloading the saved model does not reproduce its outputs; nothing written")
        summary = {"model": str(model_path.resolve()), "family": adapter.name, "model_class": type(model).__name__,
                   "data": inputs.source("val"), "random_ids": inputs.random_ids,
                   "budget": budget if facts["budget_metric"] == "ppl" else None, "max_steps": args.max_steps,
                   "objective": {"lm_weight": args.lm_weight, "distill_weight": args.distill_weight},
                   "layers": sorted(selection.layers), **facts, "seed": args.seed, "selection_log": selection.log,
                   "roundtrip_identical": identical, "seconds": time.perf_counter() - start, "report": report}
        (staged / "compression.json").write_text(json.dumps(_clean(summary), indent=2) + "\n", encoding="utf-8")
    print(f"LiSA on layers {sorted(selection.layers)} ({len(selection.layers)}/{n_layers} = "
          f"{facts['fraction_layers_replaced']:.0%} replaced), mode {report['mode']}, rank {report['rank']}: Q/K params "
          f"{report['qk_compression_ratio']:.2f}x smaller, {_outcome(facts)}; reload identical: {identical}")
    print(f"wrote {out} (load with pipelines.compression.io.load_lisa_model)")
    return 0


def add_lisa_parser(sub) -> None:
    """Register `alignflow lisa analyze|compress` on the main CLI's subparsers."""
    lisa = sub.add_parser("lisa", help="LiSA attention analysis / compression of a local Llama or BERT checkpoint",
                          description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    actions = lisa.add_subparsers(dest="lisa_command", required=True)

    def common(p) -> None:
        p.add_argument("--model", required=True, metavar="PATH", help="local HF checkpoint folder (Llama or BERT)")
        p.add_argument("--texts", metavar="FILE", help=".txt (one text per line) or .jsonl (text, or prompt/response)")
        p.add_argument("--random-ids", action="store_true",
                       help="random token ids instead of texts: structure-only analysis, no tokenizer needed")
        p.add_argument("--max-length", type=int, default=128, help="tokens per sequence (default 128)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")

    an = actions.add_parser("analyze", help="attention similarity between layers and per-layer sensitivity")
    common(an)
    an.add_argument("--out", metavar="DIR", help="default reports/lisa/<model folder name>")
    an.add_argument("--n-seqs", type=int, default=16, help="sequences analysed (default 16)")
    an.add_argument("--metric", choices=["cosine", "js"], default="cosine")
    an.add_argument("--batch-size", type=int, default=8, help="batch size of the perplexity passes")
    an.set_defaults(func=_cmd_analyze)

    co = actions.add_parser("compress", help="greedy LiSA layer selection under a perplexity (or, without an LM "
                            "head, embedding-similarity) budget; save the model")
    common(co)
    co.add_argument("--out", metavar="DIR", required=True, help="folder for the compressed model")
    co.add_argument("--budget", type=float, default=None,
                    help=f"models with an LM head: max relative val-ppl increase (default {DEFAULT_BUDGET})")
    co.add_argument("--min-similarity", type=float, default=None,
                    help="models without an LM head (e.g. BertModel): min mean cosine similarity of the mean-pooled "
                         f"sentence embeddings to the original's on the val texts (default {DEFAULT_MIN_SIMILARITY})")
    co.add_argument("--rank", type=int, default=None, help="per-head rank of A_q/A_k (default about head_dim/6)")
    co.add_argument("--max-steps", "--steps", dest="max_steps", type=int, default=40,
                    help="LiSA training steps per tried layer (default 40)")
    co.add_argument("--mode", choices=["full", "align", "lowrank", "share"], default="full")
    co.add_argument("--n-train", type=int, default=512, help="training sequences (default 512)")
    co.add_argument("--n-val", type=int, default=64, help="validation sequences (default 64)")
    co.add_argument("--batch-size", type=int, default=16)
    co.add_argument("--lr", type=float, default=1e-3)
    co.add_argument("--lm-weight", type=float, default=0.0, help="weight of the LM loss (default 0)")
    co.add_argument("--distill-weight", type=float, default=1.0, help="weight of attention distillation (default 1)")
    co.set_defaults(func=_cmd_compress)
