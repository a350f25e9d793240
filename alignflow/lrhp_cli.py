"""`alignflow lrhp`: embed any preference file with a trained LRHP encoder, and select pairs by it.

    alignflow lrhp embed  --model PATH --pairs FILE --out DIR [--kind-column COL] [--batch-size N]
    alignflow lrhp select --model PATH --target FILE --pool FILE --k K --out FILE [--knn N]

PATH: a folder the `lrhp` stage wrote (`models/lrhp/model`, or `alignflow registry get
preference-repr@champion`). FILE: JSONL, one pair per line with string fields prompt, chosen and
rejected (the project's pair layout; other fields are kept). A bad line stops the command with
`FILE: line N: problem` and exit 2, before anything is written.

embed writes DIR/vectors.safetensors (one row per pair, canonical order prompt-chosen-rejected),
DIR/vector_ids.json (the pair ids, or line numbers), DIR/map.png (the first two principal axes,
coloured by `--kind-column` when given) and DIR/embed.json; DIR appears whole or not at all.
select scores each pool pair by the mean cosine similarity to its `--knn` nearest target pairs (the
`lrhp_select` stage's rule, `pipelines/lrhp/selection.py`) and writes the top K pool records, best
first, each with its `lrhp_score`, to FILE (atomically). The same functions run in the stages; this
module reads arguments and files and prints.
"""
from __future__ import annotations

import time
from pathlib import Path

from alignflow.runtime.errors import AlignflowError


def _pairs(path: str, kind_column: str | None = None) -> list[dict]:
    from pipelines.models.preference.pairs import read_pairs

    if not Path(path).is_file():
        raise AlignflowError(f"{path}: no such file")
    try:
        return read_pairs(path, kind_column)
    except ValueError as exc:  # JsonlError included: FILE: line N: problem
        raise AlignflowError(str(exc)) from exc


def _encoder(path: str):
    from pipelines.models.preference.encoder import PairEncoder

    if not Path(path).is_dir():
        raise AlignflowError(f"{path}: no such model folder (an `lrhp` stage output, e.g. models/lrhp/model)")
    try:
        return PairEncoder.load(path)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise AlignflowError(f"{path}: not an LRHP encoder folder ({exc})") from exc


def _cmd_embed(args) -> int:
    from pipelines.atomic import atomic_dir, write_json_atomic
    from pipelines.lrhp.analysis import pca_2d, plot_map
    from pipelines.lrhp.vectors import save_vectors

    records = _pairs(args.pairs, args.kind_column)
    encoder = _encoder(args.model)
    started = time.perf_counter()
    z = encoder.embed_records(records, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    groups = [r["kind"] or "pairs" for r in records] if args.kind_column else ["pairs"] * len(records)
    with atomic_dir(args.out) as staged:
        save_vectors(staged, {"pairs": z}, {"pairs": ids})
        if len(records) >= 3:  # two principal axes need three points
            plot_map(pca_2d(z), groups, staged / "map.png", f"LRHP vectors of {Path(args.pairs).name}")
        write_json_atomic(staged / "embed.json", {"model": str(args.model), "pairs": str(args.pairs), "n": len(records),
                                                   "dim": int(z.shape[1]), "seconds": round(seconds, 3)})
    print(f"embedded {len(records)} pairs ({z.shape[1]} dims) in {seconds:.1f} s -> {args.out}")
    return 0


def _cmd_select(args) -> int:
    from pipelines.data.jsonl import write_jsonl_atomic
    from pipelines.lrhp.selection import similarity_scores, top_k

    target, pool = _pairs(args.target), _pairs(args.pool)
    if not 1 <= args.k <= len(pool):
        raise AlignflowError(f"--k {args.k}: choose 1 <= K <= {len(pool)} (the pool's pairs in {args.pool})")
    encoder = _encoder(args.model)
    scores = similarity_scores(encoder.embed_records(pool, args.batch_size),
                               encoder.embed_records(target, args.batch_size), args.knn)
    chosen = top_k(scores, args.k)
    write_jsonl_atomic([{**{k: v for k, v in pool[i].items() if k != "kind"}, "lrhp_score": round(float(scores[i]), 6)}
                        for i in chosen], args.out)
    print(f"selected {len(chosen)} of {len(pool)} pool pairs (score {scores[chosen[-1]]:.4f} to {scores[chosen[0]]:.4f}) "
          f"-> {args.out}")
    return 0


def add_lrhp_parser(sub) -> None:
    """Register `alignflow lrhp embed|select` on the main CLI's subparsers."""
    lrhp = sub.add_parser("lrhp", help="LRHP: embed a preference file, or select pool pairs close to a target set",
                          description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    actions = lrhp.add_subparsers(dest="lrhp_command", required=True)
    emb = actions.add_parser("embed", help="vectors and a 2-D map of every pair in a file")
    emb.add_argument("--model", required=True, metavar="PATH", help="LRHP encoder folder (models/lrhp/model)")
    emb.add_argument("--pairs", required=True, metavar="FILE", help="JSONL of prompt / chosen / rejected pairs")
    emb.add_argument("--out", required=True, metavar="DIR")
    emb.add_argument("--kind-column", help="colour the map by this field (the world's 'world' kinds, a subset name...)")
    emb.add_argument("--batch-size", type=int, default=32)
    emb.set_defaults(func=_cmd_embed)
    sel = actions.add_parser("select", help="the K pool pairs most similar to a target set")
    sel.add_argument("--model", required=True, metavar="PATH")
    sel.add_argument("--target", required=True, metavar="FILE", help="JSONL of the target preference pairs")
    sel.add_argument("--pool", required=True, metavar="FILE", help="JSONL of the pool to select from")
    sel.add_argument("--k", type=int, required=True, help="pairs to select")
    sel.add_argument("--knn", type=int, default=5, help="nearest target pairs averaged per pool pair (default 5, as lrhp_select)")
    sel.add_argument("--out", required=True, metavar="FILE", help="JSONL of the selected pool records, best first")
    sel.add_argument("--batch-size", type=int, default=32)
    sel.set_defaults(func=_cmd_select)

