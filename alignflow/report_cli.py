"""`alignflow report`: the subcommand's parser and handler (the page itself: `alignflow/report.py`)."""
from __future__ import annotations

from pathlib import Path

from alignflow.runtime.paths import repo_root


def add_report_parser(sub) -> None:
    rep = sub.add_parser("report", help="one self-contained HTML page: stage graph, metrics, models, claims, figures")
    rep.add_argument("--out", default="reports/report.html", help="where the page goes (default: %(default)s)")
    rep.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from alignflow.report import write_report

    root = repo_root()
    out = write_report(root, Path(args.out) if Path(args.out).is_absolute() else root / args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): open it in a browser, no server needed")
    return 0
