"""Decoding speed of NAST (one encoder pass + greedy CTC) against the AR baseline (greedy and beam).

Not a test: it prints medians measured in one run on this machine. Every method is timed end to
end from fbank features (encoder included) at batch 1 and batch 32, after warm-up runs, as the
median of repeats, with a fixed number of torch threads.

Fair length: with random weights an AR decoder may stop at once or never emit eos, so AR decoding
is forced to produce exactly ``--out-len`` tokens (eos banned before, stopped after); NAST's cost
does not depend on its output length (one pass). With trained models pass ``--free-length`` to let
AR stop at eos (max length still ``--out-len``).

    python -m benchmarks.st_decoding_speed --threads 2                     # random init, tiny default
    python -m benchmarks.st_decoding_speed --device cuda --config '{"d_model": 512, "n_heads": 8, "ffn_dim": 2048,
        "acoustic_layers": 12, "textual_layers": 12}' --nast-config '{"src_ctc_layers": [4, 8],
        "tgt_ctc_layers": [4, 8], "cross_layer_from": 3}' --ar-config '{"decoder_layers": 6}'   # paper-sized
    python -m benchmarks.st_decoding_speed --nast models/st_nast/model --ar models/st_ar/model --free-length \
        --json reports/bench/st.json   # the trained pipeline models (the st_compare stage times them on real features)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pipelines.speech.evaluation import median_seconds
from pipelines.speech.models import build_model, load_model

SPECIAL = {"pad": 1, "bos": 2, "eos": 3}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nast", help="saved NAST directory (default: random init)")
    parser.add_argument("--ar", help="saved AR directory (default: random init)")
    parser.add_argument("--config", default="{}", help="JSON config overrides for both random-init models")
    parser.add_argument("--nast-config", default="{}", help="JSON overrides for the random-init NAST only")
    parser.add_argument("--ar-config", default="{}", help="JSON overrides for the random-init AR only")
    parser.add_argument("--vocab", type=int, default=8000, help="vocabulary size for random-init models")
    parser.add_argument("--features", help="safetensors file with 'features' (N, T, n_mels) [+ 'lengths' (N,)]")
    parser.add_argument("--min-frames", type=int, default=300, help="random features: 3 s at 100 frames/s")
    parser.add_argument("--max-frames", type=int, default=600)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--out-len", type=int, default=25, help="AR output tokens (about 4.5 s of speech)")
    parser.add_argument("--free-length", action="store_true", help="let AR stop at eos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write settings and results here")
    return parser.parse_args()


def models(args):
    out = {}
    for kind in ("nast", "ar"):
        path = getattr(args, kind)
        if path:
            out[kind] = load_model(path, device=args.device)
        else:
            torch.manual_seed(args.seed)
            cfg = {**json.loads(args.config), **json.loads(getattr(args, f"{kind}_config"))}
            out[kind] = build_model(kind, cfg, args.vocab, SPECIAL).to(args.device).eval()
    return out["nast"], out["ar"]


def feature_pool(args, n_mels: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` utterances: from ``--features`` (cycled) or random with lengths in [min, max] frames."""
    if args.features:
        from safetensors.torch import load_file

        data = load_file(args.features)
        feats = data["features"]
        lengths = data.get("lengths", torch.full((feats.size(0),), feats.size(1)))
        idx = torch.arange(n) % feats.size(0)
        return feats[idx].float(), lengths[idx].long()
    gen = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(args.min_frames, args.max_frames + 1, (n,), generator=gen)
    feats = torch.randn(n, int(lengths.max()), n_mels, generator=gen)
    feats = feats.masked_fill(torch.arange(feats.size(1))[None, :, None] >= lengths[:, None, None], 0.0)
    return feats, lengths


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    nast, ar = models(args)
    feats, lengths = feature_pool(args, nast.cfg["n_mels"], max(args.batch_sizes))
    feats, lengths = feats.to(args.device), lengths.to(args.device)
    length_kw = {"max_len": args.out_len, "min_len": 0 if args.free_length else args.out_len}
    methods = {
        "nast_greedy": lambda f, n: nast.decode(f, n),
        "ar_greedy": lambda f, n: ar.greedy_decode(f, n, **length_kw),
        f"ar_beam{args.beam}": lambda f, n: ar.beam_search(f, n, beam_size=args.beam, **length_kw),
    }
    results = []
    with torch.inference_mode():
        for bsz in args.batch_sizes:
            n = lengths[:bsz]
            f = feats[:bsz, : int(n.max())]
            for name, fn in methods.items():
                sec = median_seconds(lambda: fn(f, n), args.warmup, args.repeats, args.device)
                results.append({"batch": bsz, "method": name, "median_s": sec, "ms_per_utt": 1000 * sec / bsz,
                                "mean_frames": float(n.float().mean())})
    base = {r["batch"]: r["median_s"] for r in results if r["method"] == "nast_greedy"}
    speedups = {f"{r['method']}/nast_greedy@b{r['batch']}": r["median_s"] / base[r["batch"]]
                for r in results if r["method"] != "nast_greedy"}

    params = {k: sum(p.numel() for p in m.parameters()) for k, m in (("nast", nast), ("ar", ar))}
    print(f"device {args.device}, threads {args.threads}, params nast {params['nast']:,} ar {params['ar']:,}, "
          f"AR output {'<=' if args.free_length else '='} {args.out_len} tokens, median of {args.repeats}")
    print(f"{'batch':>5}  {'method':<12} {'median s':>10} {'ms/utt':>9} {'x NAST':>7}")
    for r in results:
        ratio = r["median_s"] / base[r["batch"]]
        print(f"{r['batch']:>5}  {r['method']:<12} {r['median_s']:>10.4f} {r['ms_per_utt']:>9.2f} {ratio:>7.2f}")
    print("speed-ups (AR time / NAST time): " + ", ".join(f"{k} {v:.1f}x" for k, v in speedups.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(json.dumps({"settings": settings, "params": params, "results": results,
                                               "speedups": speedups}, indent=2) + "\n")


if __name__ == "__main__":
    main()
