"""OT data selection: time and peak memory against candidate-pool size, per solver.

Not a test: it prints numbers measured in one run on this machine (CPU, fixed thread count).
Embeddings are random and clustered (seeded): ``--clusters`` Gaussian clusters on the unit sphere's
scale; targets come from the first quarter of the clusters, candidates from all of them. Pools are
nested (a smaller pool is the first rows of a larger one), and k = ``--k-fraction`` of each pool.

Each (pool, solver) runs in a fresh Python subprocess that builds the data, records its peak RSS
(``ru_maxrss``) while idle, runs the selection, and reports peak RSS minus that baseline: the memory
the selection itself needed. ``emd`` and ``sinkhorn`` run only where N*M <= ``--max-dense-entries``
(otherwise reported as skipped with the dense cost's size); ``minibatch`` always runs; ``centroid``
and ``random`` are references. Columns:

* overlap: |selection ∩ emd selection| / k against the same pool's emd. Where emd was skipped
  (marked *), against the emd of the largest pool where it ran, on the candidates the pools share:
  this solver's k' lowest scores among those shared rows vs that emd's k' picks.
* on-target: fraction of the selection drawn from the target's clusters (known by construction).
* OT dist: `selection_distance` of the selection to the targets (exact OT, <= 2000 points a side).

    python -m benchmarks.ot_selection --threads 2
    python -m benchmarks.ot_selection --pools 10000 100000 --batch-size 4096 --json reports/bench/ot_selection.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SOLVERS = ["emd", "sinkhorn", "minibatch", "centroid", "random"]
DENSE = {"emd", "sinkhorn"}
CHUNK = 10_000  # rows generated per draw: keeps the data's transient memory small, and pools nested


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, nargs="+", default=[10_000, 100_000], help="candidate pool sizes")
    parser.add_argument("--targets", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--k-fraction", type=float, default=0.1)
    parser.add_argument("--solvers", nargs="+", default=SOLVERS, choices=SOLVERS)
    parser.add_argument("--max-dense-entries", type=int, default=25_000_000,
                        help="emd/sinkhorn run only where pool x targets <= this")
    parser.add_argument("--batch-size", type=int, default=8192, help="minibatch chunk size")
    parser.add_argument("--reg", type=float, default=0.05, help="sinkhorn reg, relative to the largest cost")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- child: one configuration


def make_data(n: int, m: int, dim: int, clusters: int, seed: int):
    """Candidates [n, dim] (float32) with cluster labels, and targets [m, dim] from the first quarter of clusters."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    on = max(1, clusters // 4)
    noise = 0.6 / np.sqrt(dim)

    def draw(gen, rows, pool):
        labels = gen.integers(0, pool, size=rows)
        out = gen.standard_normal((rows, dim), dtype=np.float32)
        out *= noise
        out += centers[labels].astype(np.float32)
        return out, labels

    targets, _ = draw(np.random.default_rng([seed, 1]), m, on)
    gen = np.random.default_rng([seed, 2])
    candidates = np.empty((n, dim), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        candidates[start:start + rows], labels[start:start + rows] = draw(gen, rows, clusters)
    return candidates, labels < on, targets


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(config: dict) -> dict:
    import resource

    import numpy as np

    from pipelines.selection import select_centroid, select_ot, select_random, selection_distance

    if "torch" in sys.modules:  # POT may import it for its backends
        sys.modules["torch"].set_num_threads(config["threads"])
    candidates, on_target, targets = make_data(config["pool"], config["targets"], config["dim"],
                                               config["clusters"], config["seed"])
    k = max(1, round(config["k_fraction"] * config["pool"]))
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    idle_rss = _rss_mb()
    solver = config["solver"]
    if solver == "centroid":
        chosen = select_centroid(candidates, targets, k)
    elif solver == "random":
        chosen = select_random(len(candidates), k, seed=config["seed"])
    else:
        chosen = select_ot(candidates, targets, k, solver=solver, reg=config["reg"],
                           batch_size=config["batch_size"], seed=config["seed"])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = Path(config["out"])
    np.save(out.with_suffix(".idx.npy"), chosen.indices)
    if chosen.scores is not None:
        np.save(out.with_suffix(".scores.npy"), chosen.scores)
    return {
        "seconds": chosen.seconds, "peak_mb": (peak_kb - baseline_kb) / 1024,
        "idle_maxrss_mb": baseline_kb / 1024, "idle_rss_mb": idle_rss, "k": k,
        "on_target": float(on_target[chosen.indices].mean()),
        "ot_dist": selection_distance(candidates[chosen.indices], targets, seed=config["seed"]),
    }


# ---------------------------------------------------------------- parent: orchestration


def run_config(config: dict, threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.ot_selection", "--child", json.dumps(config)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{config['solver']} on pool {config['pool']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_overlaps(rows: list[dict], workdir: Path) -> None:
    import numpy as np

    def load(row, what):
        path = workdir / f"{row['pool']}-{row['solver']}.{what}.npy"
        return np.load(path) if path.exists() else None

    emd = {r["pool"]: r for r in rows if r["solver"] == "emd" and "seconds" in r}
    for row in rows:
        if "seconds" not in row or row["solver"] == "emd":
            continue
        mine = load(row, "idx")
        if row["pool"] in emd:
            ref = load(emd[row["pool"]], "idx")
            row["overlap_emd"] = len(np.intersect1d(mine, ref)) / len(ref)
            continue
        smaller = [p for p in emd if p < row["pool"]]
        scores = load(row, "scores")
        if not smaller or scores is None:
            continue
        ref_pool = max(smaller)
        ref = load(emd[ref_pool], "idx")
        shared = np.sort(np.argsort(scores[:ref_pool], kind="stable")[:len(ref)])
        row["overlap_emd"] = len(np.intersect1d(shared, ref)) / len(ref)
        row["overlap_ref"] = f"emd@{ref_pool:,} on shared rows"


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="ot-selection-") as tmp:
        workdir = Path(tmp)
        for pool in args.pools:
            for solver in args.solvers:
                row = {"pool": pool, "solver": solver}
                entries = pool * args.targets
                if solver in DENSE and entries > args.max_dense_entries:
                    row["skipped"] = f"dense cost would need {8 * entries / 1e9:.3g} GB"
                else:
                    config = {"pool": pool, "solver": solver, "targets": args.targets, "dim": args.dim,
                              "clusters": args.clusters, "k_fraction": args.k_fraction, "reg": args.reg,
                              "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads,
                              "out": str(workdir / f"{pool}-{solver}")}
                    row.update(run_config(config, args.threads))
                rows.append(row)
                print(f"  done: pool={pool:,} {solver}", file=sys.stderr, flush=True)
        add_overlaps(rows, workdir)
    print_table(args, rows)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "child")}
        out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")


def print_table(args, rows: list[dict]) -> None:
    print(f"OT selection: targets={args.targets:,} dim={args.dim} clusters={args.clusters} "
          f"k={args.k_fraction:.0%} of pool, threads={args.threads}, minibatch batch_size={args.batch_size}, "
          f"sinkhorn reg={args.reg} (relative), dense limit={args.max_dense_entries:,} entries")
    print()
    print("| pool | solver | k | seconds | peak MB | overlap w/ emd | on-target | OT dist | note |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['pool']:,} | {r['solver']} | | | | | | | skipped: {r['skipped']} |")
            continue
        overlap = "" if "overlap_emd" not in r else f"{r['overlap_emd']:.3f}" + ("*" if "overlap_ref" in r else "")
        if r["solver"] == "emd":
            overlap = "1.000"
        print(f"| {r['pool']:,} | {r['solver']} | {r['k']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {overlap} "
              f"| {r['on_target']:.3f} | {r['ot_dist']:.4f} | {r.get('overlap_ref', '')} |")
    print()
    print("peak MB = child's peak RSS minus its idle peak RSS (data built, libraries loaded); "
          "* = overlap against a smaller pool's emd on the candidates both pools share")


if __name__ == "__main__":
    main()
