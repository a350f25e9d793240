"""What logging a registered model as an MLflow model (flavour, signature, example) adds to a stage.

Not a test: it prints numbers measured in one run on this machine. For each model folder, the
baseline is what a stage did before flavours: `mlflow.log_artifacts` of the bare folder; the
candidate is `alignflow.runtime.flavours.log` of the same folder (build the MLflow model, validate
its input example, log it). Both go to a fresh local store, in the same process, `--repeats` times
each, alternating; the table shows medians, the added seconds and the ratio. Run it on the folders
a DAG wrote (`models/<stage>/model`, flavour from dvc.yaml), or without `--models` on tiny models
of every family built on the spot (a quick check that the script runs, not a result):

    python -m benchmarks.model_logging --models reward-bt=bt:models/bt_rm/model policy-sft=chat-lm:models/sft/model
    python -m benchmarks.model_logging --repeats 1          # tiny models, a quick check
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import cpu_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="NAME=FLAVOUR:FOLDER (default: tiny models of every family)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args()


def tiny_models(workdir: Path) -> dict[str, tuple[str, Path]]:
    from tests.infra import flavour_models

    return {name: (flavour, build(workdir / name)) for name, (flavour, build) in flavour_models.MODELS.items()}


def parse_models(specs: list[str]) -> dict[str, tuple[str, Path]]:
    models = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        flavour, _, folder = rest.partition(":")
        if not (name and flavour and folder) or not Path(folder).is_dir():
            sys.exit(f"--models {spec!r}: expected NAME=FLAVOUR:FOLDER with an existing folder")
        models[name] = (flavour, Path(folder))
    return models


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def measure(folder: Path, flavour: str, repeats: int) -> dict:
    import mlflow

    from alignflow.runtime import flavours

    bare, flavoured = [], []
    for _ in range(repeats):
        for kind, times in (("bare", bare), ("flavoured", flavoured)):
            with mlflow.start_run():
                started = time.perf_counter()
                if kind == "bare":
                    mlflow.log_artifacts(str(folder), "model")
                else:
                    flavours.log(folder, flavour, "model")
                times.append(time.perf_counter() - started)
    b, f = statistics.median(bare), statistics.median(flavoured)
    return {"bare_s": round(b, 3), "flavoured_s": round(f, 3), "added_s": round(f - b, 3), "ratio": round(f / b, 2)}


def main() -> None:
    args = parse_args()
    import mlflow

    with tempfile.TemporaryDirectory(prefix="model-logging-") as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment("model-logging")
        models = parse_models(args.models) if args.models else tiny_models(Path(tmp) / "models")
        rows = []
        for name, (flavour, folder) in models.items():
            flavour_result = measure(folder, flavour, args.repeats)
            rows.append({"model": name, "flavour": flavour, "mb": round(folder_mb(folder), 2), **flavour_result})
            print(f"{name:<24} {flavour:<10} {rows[-1]['mb']:>8.2f} MB  bare {rows[-1]['bare_s']:>6.2f} s  "
                  f"flavoured {rows[-1]['flavoured_s']:>6.2f} s  added {rows[-1]['added_s']:>6.2f} s  "
                  f"x{rows[-1]['ratio']}", flush=True)
    total = round(sum(r["added_s"] for r in rows), 2)
    print(f"added in total: {total} s over {len(rows)} models; median of {args.repeats}; CPU: {cpu_model()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "repeats": args.repeats, "rows": rows,
                                               "added_total_s": total}, indent=2))


if __name__ == "__main__":
    main()
