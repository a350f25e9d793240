"""`alignflow status`: which stages are stale and why, from one DVC status of the whole graph."""
from __future__ import annotations

import json

from alignflow.runtime.paths import repo_root


def _describe_change(change: dict) -> list[str]:
    parts = []
    for kind, items in change.items():
        if isinstance(items, dict):
            parts.append(f"{kind}: " + ", ".join(f"{k} ({v})" for k, v in items.items()))
        else:
            parts.append(f"{kind}: {items}")
    return parts


def cmd_status(args) -> int:
    from alignflow.runtime.stage_graph import load_stage_graph
    from alignflow.stale import status_plan

    root = repo_root()
    graph = load_stage_graph(root)
    stale = status_plan(root, graph)
    # A stage DVC runs on every repro (external_inputs) is not reported for a new fingerprint or param: what
    # matters is whether a file it fingerprints changed, which is reported on the stage that reads it (and
    # flows downstream from there); a change to its code or outputs is reported on it (alignflow/stale.py)
    report = {}
    for name in graph.order():
        reasons = []
        for change in stale.own.get(name, []):
            reasons += _describe_change(change) if isinstance(change, dict) else [str(change)]
        if stale.upstream.get(name):
            reasons.append(f"upstream stale: {', '.join(stale.upstream[name])}")
        report[name] = reasons
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, reasons in report.items():
        print(f"{name:<18} {'stale' if reasons else 'up to date'}")
        for reason in reasons:
            print(f"{'':<20}{reason}")
    return 1 if any(report.values()) and args.exit_code else 0
