"""The paths a stage reads and writes, as dvc.yaml's command hands them over (`--KEY PATH`).

Stage code never spells a workspace path: a stage declares keys (`inputs=("base",)`,
`outputs=("out",)`), its dvc.yaml `cmd` passes the same paths its `deps:`/`outs:` list, and the
stage asks `ctx.input("base")` / `ctx.output("out")`. A key ending in `*` takes several paths, one
ending in `?` may be left out; `--stage NAME` names a templated (`foreach`) variant, `group@key`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from alignflow.runtime.stage import StageContext


class StagePaths:
    """The input and output keys a stage declares; dvc.yaml's `cmd` gives each one as `--KEY PATH`.

    A key ending in `*` takes one or more paths, one ending in `?` is optional. Inputs must exist
    when the stage starts (a clear error naming the key and path otherwise, exit 2).
    """

    def __init__(self, inputs: Sequence[str] = (), outputs: Sequence[str] = ()):
        self.inputs = {k.rstrip("*?"): k for k in inputs}
        self.outputs = {k.rstrip("*?"): k for k in outputs}
        self.values: dict[str, Any] = {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for table, role in ((self.inputs, "input"), (self.outputs, "output")):
            for key, spec in table.items():
                many, optional = spec.endswith("*"), spec.endswith("?")
                parser.add_argument(f"--{key.replace('_', '-')}", dest=f"path_{key}", metavar="PATH",
                                    nargs="+" if many else None, required=not optional,
                                    help=f"{role} path, relative to the repository root (from dvc.yaml)")

    def take(self, args: argparse.Namespace, root: Path, stage: str) -> None:
        """Keep the parsed paths; fail on an input that is not there."""
        for key in {**self.inputs, **self.outputs}:
            value = getattr(args, f"path_{key}")
            self.values[key] = value
            if key not in self.inputs or value is None:
                continue
            for rel in value if isinstance(value, list) else [value]:
                if not (root / rel).exists():
                    raise FileNotFoundError(f"stage '{stage}': input --{key.replace('_', '-')} {rel} does not exist "
                                            f"(run the stage that writes it first)")

    def one(self, ctx: "StageContext", key: str, table: dict) -> Path | None:
        if key not in table:
            raise KeyError(f"stage '{ctx.name}' declares no path '{key}' (it has: {', '.join(self.inputs) or '-'} "
                           f"in, {', '.join(self.outputs) or '-'} out)")
        value = self.values.get(key)
        if isinstance(value, list):
            raise KeyError(f"stage '{ctx.name}': path '{key}' takes several values; use ctx.inputs('{key}')")
        return None if value is None else (ctx.root / value).resolve()

    def many(self, ctx: "StageContext", key: str, table: dict) -> list[Path]:
        if key not in table:
            raise KeyError(f"stage '{ctx.name}' declares no path '{key}'")
        value = self.values.get(key) or []
        return [(ctx.root / v).resolve() for v in (value if isinstance(value, list) else [value])]


def parse_stage_args(name: str, argv: Sequence[str], paths: StagePaths,
                     configure: Callable[[argparse.ArgumentParser], None] | None = None,
                     description: str | None = None) -> tuple[str, argparse.Namespace]:
    """The stage's name (`--stage` for a templated variant) and its parsed command line."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=description)
    parser.add_argument("--stage", default=name, help="stage name (a dvc.yaml foreach variant: group@key)")
    paths.add_arguments(parser)
    if configure is not None:
        configure(parser)
    args = parser.parse_args(list(argv))
    return args.stage, args
