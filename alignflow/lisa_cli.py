"""`alignflow lisa`: LiSA attention analysis and compression for any local HF Llama or BERT checkpoint.

    alignflow lisa analyze  --model PATH [--texts FILE] [--out DIR] [--n-seqs N] [--max-length L] [--random-ids]
    alignflow lisa compress --model PATH --out DIR [--texts FILE] [--budget B] [--rank R] [--steps S] [--random-ids]

PATH: a local Hugging Face checkpoint folder (config.json + weights) of the Llama family (e.g.
``LlamaForCausalLM``) or the BERT family (``BertForMaskedLM``; a bare ``BertModel`` can be analysed
but has no masked-LM loss, so no sensitivity and no compression). It need not come from the pipeline.
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
compress: greedy deepest-first layer selection under the perplexity budget, LiSA parameters trained
--steps steps per tried layer (default objective: attention distillation, i.e. LiSA learns to
reproduce the model's own attention); writes the compressed model to --out (load it with
`pipelines.compression.io.load_lisa_model`), its tokenizer, and compression.json, after checking that
a reload reproduces the logits exactly. Exit codes: 0 done, 1 no layer met the budget (nothing
written), 2 bad input (missing path, no config.json, unsupported architecture, unreadable texts).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from alignflow.runtime.errors import AlignflowError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json")
CORPUS = {"train": "data/world/corpus_train.jsonl", "val": "data/world/corpus_val.jsonl"}


# ---- loading -----------------------------------------------------------------------------------------
def _model_class(config):
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type):
            return cls
    auto = {"llama": transformers.AutoModelForCausalLM, "bert": transformers.AutoModelForMaskedLM}
    return auto.get(config.model_type, transformers.AutoModel)


def load_checkpoint(path: str | Path):
    """(model in float32 eval mode, its family adapter); AlignflowError naming the path otherwise."""
    import torch
    from transformers import AutoConfig

    from pipelines.compression.families import family_of
    from pipelines.compression.io import CONFIG_NAME, load_lisa_model
    from pipelines.models.safe_weights import require_safetensors

    path = Path(path)
    if not path.exists():
        raise AlignflowError(f"{path}: no such model folder")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise AlignflowError(f"{path}: not a Hugging Face checkpoint folder (no config.json)")
    try:
        require_safetensors(path, "model")
    except (ValueError, FileNotFoundError) as exc:
        raise AlignflowError(str(exc)) from exc
    if (path / CONFIG_NAME).is_file():
        try:
            model = load_lisa_model(path)
        except (OSError, ValueError, KeyError) as exc:
            raise AlignflowError(f"{path}: cannot load the LiSA checkpoint: {exc}") from exc
        return model.float().eval(), family_of(model)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise AlignflowError(f"{path / 'config.json'}: cannot read the model config: {exc}") from exc
    cls = _model_class(config)
    try:  # check the family on a weightless copy first, so an unsupported model is never loaded
        with torch.device("meta"):
            probe = cls(config)
    except Exception:  # noqa: BLE001 - some classes cannot be built on meta; the real load decides
        probe = None
    if probe is not None:
        try:
            family_of(probe)
        except ValueError as exc:
            raise AlignflowError(f"{path}: {exc}") from exc
    try:
        model = cls.from_pretrained(str(path), dtype=torch.float32, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise AlignflowError(f"{path}: cannot load the checkpoint: {exc}") from exc
    try:
        adapter = family_of(model)
    except ValueError as exc:
        raise AlignflowError(f"{path}: {exc}") from exc
    return model.eval(), adapter


def load_tokenizer_if_any(path: str | Path):
    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AlignflowError(f"{path}: cannot load its tokenizer: {exc}") from exc


def read_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of a .txt (one per line) or .jsonl ("text", or "prompt" + "response") file."""
    from pipelines.data.template import format_example, format_prompt

    path = Path(path)
    if not path.is_file():
        raise AlignflowError(f"{path}: texts file not found")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise AlignflowError(f"{path}: unsupported texts file (use .txt, one text per line, or .jsonl)")
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
                    raise AlignflowError(f"{path}: line {number}: not valid JSON ({exc.msg})") from exc
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    texts.append(row["text"])
                elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
                    response = row.get("response")
                    texts.append(format_example(row["prompt"], response) if isinstance(response, str)
                                 else format_prompt(row["prompt"]))
                else:
                    raise AlignflowError(f"{path}: line {number}: needs a 'text' field or 'prompt'/'response'")
    except (OSError, UnicodeDecodeError) as exc:
        raise AlignflowError(f"{path}: cannot read the texts file: {exc}") from exc
    if not texts:
        raise AlignflowError(f"{path}: no texts in the file")
    return texts


def _default_corpus(split: str) -> Path | None:
    from alignflow.runtime.paths import repo_root

    try:
        path = repo_root() / CORPUS[split]
    except AlignflowError:
        return None
    return path if path.is_file() else None


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
    import torch

    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, max(2, length)), generator=gen).tolist()


class Inputs:
    """Where the token sequences come from, and the ids the objective needs."""

    def __init__(self, args, model, adapter):
        self.model_path = Path(args.model)
        self.model, self.family = model, adapter.name
        self.random_ids = bool(args.random_ids)
        self.tokenizer = None if self.random_ids else load_tokenizer_if_any(self.model_path)
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
        if self.tokenizer is not None:
            if self.tokenizer.mask_token_id is None:
                raise AlignflowError(f"{self.model_path}: the tokenizer has no mask token; BERT's masked-LM "
                                     "perplexity needs one")
            return int(self.tokenizer.mask_token_id), "tokenizer"
        config_id = getattr(self.model.config, "mask_token_id", None)
        if config_id is not None:
            return int(config_id), "config"
        return int(self.model.config.vocab_size) - 1, "last vocabulary id (random ids, no tokenizer)"

    def source(self, split: str) -> str:
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
            return random_sequences(self.model, n, self.max_length, self.seed + (0 if split == "val" else 1))
        if self.texts_arg:
            texts = read_texts(self.texts_arg)
            if n_val is not None:
                k = min(n_val, max(1, len(texts) // 4))
                texts = texts[-k:] if split == "val" else (texts[:-k] or texts)
            texts = texts[:n]
        else:
            texts = read_texts(self.source(split), limit=n)
        rows = encode(self.tokenizer, texts, self.family, self.max_length)
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
    from pipelines.compression.analysis import (layer_pair_similarity, layer_sensitivity, plot_similarity_grid,
                                                plot_sensitivity)
    from pipelines.compression.objective import make_batches, pad_id

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
    ids, mask = make_batches(seqs, len(seqs), pad_id(model))[0]
    similarity = layer_pair_similarity(model, ids, mask, metric=args.metric)
    written = [plot_similarity_grid(similarity, out / "similarity_grid.png")]
    sensitivity, note = None, None
    try:
        sensitivity = layer_sensitivity(model, seqs, batch_size=args.batch_size, mask_token_id=inputs.mask_token_id,
                                        seed=args.seed)
    except ValueError as exc:  # e.g. a bare BertModel: no LM head, no perplexity
        note = f"no sensitivity: {exc}"
    if sensitivity is not None:
        written.append(plot_sensitivity(sensitivity, out / "sensitivity.png"))
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
        "note": note,
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


def _cmd_compress(args) -> int:
    import torch

    from pipelines.atomic import atomic_dir
    from pipelines.compression.io import CONFIG_NAME, load_lisa_model, save_lisa_model
    from pipelines.compression.lisa import lisa_report
    from pipelines.compression.objective import forward, make_batches, pad_id, perplexity
    from pipelines.compression.select import select_layers
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
    if args.budget < 0 or args.steps < 0:
        raise AlignflowError("--budget and --steps must be >= 0")
    inputs = Inputs(args, model, adapter)
    val = inputs.sequences("val", args.n_val, n_val=args.n_val)
    train = inputs.sequences("train", args.n_train, n_val=args.n_val)
    cfg = LisaTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          lm_weight=args.lm_weight, distill_weight=args.distill_weight,
                          mask_token_id=inputs.mask_token_id, progress=True)
    start = time.perf_counter()
    try:
        selection = select_layers(model, train, val, budget=args.budget, rank=args.rank, mode=args.mode,
                                  train_config=cfg, eval_batch_size=args.batch_size)
    except ValueError as exc:  # e.g. no LM head, both loss weights 0
        raise AlignflowError(f"{model_path}: {exc}") from exc
    for row in selection.log:
        print(f"layer {row['layer']:>3}: val ppl {row['ppl']:.4f} (threshold {row['threshold']:.4f}) "
              f"{'accepted' if row['accepted'] else 'rejected'}")
    if not selection.layers:
        print(f"no layer stayed within the budget ({args.budget:.2%} over base ppl {selection.base_ppl:.4f}); "
              f"nothing written to {out}. Try a larger --budget or more --steps.", file=sys.stderr)
        return 1
    final = selection.model.eval()
    report = lisa_report(final, context_len=inputs.max_length)
    lisa_ppl = perplexity(final, val, batch_size=args.batch_size, mask_token_id=inputs.mask_token_id, seed=0)
    ids, mask = make_batches(val[: args.batch_size], args.batch_size, pad_id(model))[0]
    with atomic_dir(out) as staged:
        save_lisa_model(final, staged)
        if inputs.tokenizer is not None:
            inputs.tokenizer.save_pretrained(str(staged))
        reloaded = load_lisa_model(staged)
        with torch.no_grad():
            identical = bool(torch.equal(forward(final, ids, mask).logits, forward(reloaded, ids, mask).logits))
        if not identical:
            raise AlignflowError(f"{out}: reloading the saved model does not reproduce its logits; nothing written")
        summary = {"model": str(model_path.resolve()), "family": adapter.name, "data": inputs.source("val"),
                   "random_ids": inputs.random_ids, "budget": args.budget, "steps": args.steps,
                   "objective": {"lm_weight": args.lm_weight, "distill_weight": args.distill_weight},
                   "layers": sorted(selection.layers), "base_val_ppl": selection.base_ppl, "lisa_val_ppl": lisa_ppl,
                   "ppl_increase": lisa_ppl / selection.base_ppl - 1.0, "selection_log": selection.log,
                   "roundtrip_identical": identical, "seconds": time.perf_counter() - start,
                   "report": report}
        (staged / "compression.json").write_text(json.dumps(_clean(summary), indent=2) + "\n", encoding="utf-8")
    n_layers = len(adapter.layers(model))
    print(f"LiSA on layers {sorted(selection.layers)} ({len(selection.layers)}/{n_layers}), mode {report['mode']}, "
          f"rank {report['rank']}: Q/K params {report['qk_compression_ratio']:.2f}x smaller, val ppl "
          f"{selection.base_ppl:.4f} -> {lisa_ppl:.4f} ({lisa_ppl / selection.base_ppl - 1.0:+.2%}); "
          f"reload identical: {identical}")
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

    co = actions.add_parser("compress", help="greedy LiSA layer selection under a perplexity budget; save the model")
    common(co)
    co.add_argument("--out", metavar="DIR", required=True, help="folder for the compressed model")
    co.add_argument("--budget", type=float, default=0.02, help="max relative val-ppl increase (default 0.02)")
    co.add_argument("--rank", type=int, default=None, help="per-head rank of A_q/A_k (default about head_dim/6)")
    co.add_argument("--steps", type=int, default=40, help="LiSA training steps per tried layer (default 40)")
    co.add_argument("--mode", choices=["full", "align", "lowrank", "share"], default="full")
    co.add_argument("--n-train", type=int, default=512, help="training sequences (default 512)")
    co.add_argument("--n-val", type=int, default=64, help="validation sequences (default 64)")
    co.add_argument("--batch-size", type=int, default=16)
    co.add_argument("--lr", type=float, default=1e-3)
    co.add_argument("--lm-weight", type=float, default=0.0, help="weight of the LM loss (default 0)")
    co.add_argument("--distill-weight", type=float, default=1.0, help="weight of attention distillation (default 1)")
    co.set_defaults(func=_cmd_compress)
