"""`alignflow report`: one self-contained HTML page of the workspace's last run and of its studies.

Everything a person would otherwise collect from five places: the stage graph drawn with each
stage's status (DVC: fresh, stale or never run) and its last run's time (MLflow), each stage's
headline metrics (dvc.yaml `meta.headline`), every registered model with its aliases (MLflow
registry), one claims table for all methods, and every figure the stages wrote. The page needs no
server and no network: images are embedded as base64 PNG, styles are inline.

Claims come from the study specs (`studies/*.yaml`), so each claim is written once. A study that
ran (`reports/<name>/claims.json`) gives its mean difference across seeds, the 95% t-interval and
the verdict; a study that did not run is judged on this workspace's single run: the same
difference for one seed, without an interval, and the verdict says so. `render` builds the page
from plain values, so a test can check it without a run.
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

from alignflow.runtime.stage_graph import StageGraph, load_stage_graph, read_lock
from alignflow.stage_results import headline

METHODS = {"gram": "GRAM", "lrhp": "LRHP", "rovrm": "RoVRM", "rovrm_seeds": "RoVRM seeds", "lisa": "LiSA", "nast": "NAST",
           "nast_vs_ar": "NAST vs AR", "rlhf": "RLHF"}
STATUS_COLOURS = {"fresh": "#4caf50", "stale": "#ff9800", "never run": "#bdbdbd"}


@dataclass
class StageRow:
    name: str
    status: str  # DVC now: fresh | stale | never run
    last_outcome: str  # in the newest flow run that included it: executed, up-to-date, failed, ... ("" if none)
    seconds: float | None  # wall time of the newest flow run that executed it
    metrics: dict


@dataclass
class ClaimRow:
    method: str
    claim: str
    setting: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    n_seeds: int
    verdict: str
    source: str  # a path relative to the workspace


def stage_rows(root: Path, graph: StageGraph) -> list[StageRow]:
    """Each stage in execution order: DVC status, its last flow outcome and time, its headline metrics."""
    from alignflow.stale import status_plan

    plan = status_plan(root, graph)
    lock = read_lock(root)
    last, executed = {}, {}
    for outcomes in flow_history(root):  # newest first
        for row in outcomes:
            last.setdefault(row["stage"], row["status"])
            if row["status"] == "executed":
                executed.setdefault(row["stage"], float(row["seconds"]))
    if not executed:  # flow runs from before `stages.json` was logged: each stage run's own duration
        executed = _stage_run_seconds(root)
    rows = []
    for name in graph.order():
        status = "never run" if name not in lock else ("stale" if plan.is_stale(name) else "fresh")
        rows.append(StageRow(name, status, last.get(name, ""), executed.get(name),
                             headline(root, graph.stages[name]) if name in lock else {}))
    return rows


def _stage_run_seconds(root: Path) -> dict[str, float]:
    """Seconds of each stage's newest MLflow run (its own start to end: no DVC or process start-up)."""
    import mlflow

    from alignflow.runtime import tracking

    experiment = tracking.configure(root)
    runs = mlflow.MlflowClient().search_runs([experiment], "tags.`alignflow.stage` != ''",
                                             order_by=["attributes.start_time DESC"], max_results=5000)
    seconds: dict[str, float] = {}
    for run in runs:
        if run.data.tags.get("alignflow.kind") != "reconcile" and run.info.end_time:
            seconds.setdefault(run.data.tags["alignflow.stage"], (run.info.end_time - run.info.start_time) / 1000)
    return seconds


def flow_history(root: Path, limit: int = 100) -> list[list[dict]]:
    """The stage outcomes of the newest `limit` flow runs in MLflow (each its `stages.json`), newest first."""
    import mlflow

    from alignflow.runtime import tracking

    experiment = tracking.configure(root)
    client = mlflow.MlflowClient()
    runs = client.search_runs([experiment], "tags.`alignflow.kind` = 'flow'", order_by=["attributes.start_time DESC"],
                              max_results=limit)
    history = []
    for run in runs:
        try:
            history.append(mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{tracking.FLOW_STAGES_ARTIFACT}"))
        except Exception:  # a flow run that ended before writing it (interrupted, or an older version)
            continue
    return history


def registered_models(root: Path) -> list[dict]:
    """Every registered model: its versions, aliases and gate verdicts (`alignflow registry show`)."""
    from alignflow import registry
    from alignflow.runtime import tracking

    tracking.configure(root)
    return [{**model, "versions": registry.show(model["name"])} for model in registry.list_models()]


def claim_rows(root: Path) -> list[ClaimRow]:
    """One row per claim and grid setting of every study spec: the study's verdict, or this run's."""
    from alignflow.study import load_spec
    from pipelines.evaluation.studies import verdict

    rows = []
    for path in sorted((root / "studies").glob("*.yaml")):
        spec = load_spec(path)
        method = METHODS.get(spec.name, spec.name)
        result = root / "reports" / spec.name / "claims.json"
        if result.is_file():
            for c in json.loads(result.read_text(encoding="utf-8"))["claims"]:
                setting = ", ".join(f"{k}={c[k]}" for k in spec.group_keys if k in c)
                rows.append(ClaimRow(method, c["claim"], setting, c["difference"], c["ci_low"], c["ci_high"],
                                     int(c["n_seeds"]), f"{verdict(c['ci_low'], c['ci_high'])} ({c['n_seeds']} seeds)",
                                     f"reports/{spec.name}/claims.md"))
            continue
        files = {label: root / rel for label, rel in spec.models.items()}
        for claim in spec.claims:
            better, worse = _metric(files, *claim.better), _metric(files, *claim.worse)
            diff = None if better is None or worse is None else (worse - better if claim.lower_is_better
                                                                 else better - worse)
            judged = ("metric not in this workspace" if diff is None else "one run, no interval: "
                      + ("for" if diff > 0 else "against" if diff < 0 else "no difference"))
            rows.append(ClaimRow(method, claim.name, "this workspace", diff, None, None, 0 if diff is None else 1,
                                 judged, path.relative_to(root).as_posix()))
    return rows


def _metric(files: dict[str, Path], label: str, metric: str) -> float | None:
    path = files.get(label)
    if path is None or not path.is_file():
        return None
    from alignflow.runtime.params import flatten

    value = flatten(json.loads(path.read_text(encoding="utf-8"))).get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stage_images(root: Path, graph: StageGraph) -> dict[str, list[Path]]:
    """Each stage's PNG figures (under a `plots/` folder of its outputs, so not data such as rendered
    scenes), in execution order."""
    found = {}
    for name in graph.order():
        pngs = [p for out in graph.stages[name].outs if (root / out).is_dir() for p in sorted((root / out).rglob("*.png"))
                if "plots" in p.relative_to(root / out).parts]
        if pngs:
            found[name] = pngs
    return found


def graph_png(graph: StageGraph, rows: list[StageRow]) -> bytes:
    """The stage graph in layers (a stage sits right of everything it reads), coloured by status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    flow = nx.transitive_reduction(graph.graph.reverse(copy=False))  # producer -> consumer, no shortcut edges
    pos: dict = {}
    for x, layer in enumerate(nx.topological_generations(flow)):
        # each stage near the stages it reads from (barycentre), so edges cross less
        centre = {n: sum(pos[p][1] for p in flow.predecessors(n)) / max(1, flow.in_degree(n)) for n in layer}
        for y, n in enumerate(sorted(layer, key=lambda n: (-centre[n], n))):
            pos[n] = (x, -y)
    layers = list(nx.topological_generations(flow))
    by_name = {r.name: r for r in rows}
    height = max(len(layer) for layer in layers)
    fig, ax = plt.subplots(figsize=(2.3 * len(layers), 0.55 * height + 1.2), dpi=90)
    nx.draw_networkx_edges(flow, pos, ax=ax, edge_color="#9e9e9e", arrows=True, arrowsize=8, node_size=1800)
    for name, (x, y) in pos.items():
        row = by_name[name]
        label = name if row.seconds is None else f"{name}\n{row.seconds:.0f} s"
        ax.text(x, y, label, ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.3", "fc": STATUS_COLOURS[row.status], "ec": "#424242", "alpha": 0.9})
    for status, colour in STATUS_COLOURS.items():
        ax.scatter([], [], color=colour, label=status, s=60)
    ax.legend(loc="upper left", bbox_to_anchor=(0, 1.02), ncol=3, fontsize=8, frameon=False)
    ax.set_axis_off()
    ax.margins(x=0.08, y=0.08)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _fmt(value) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render(root: Path, commit: str, profile: str, rows: list[StageRow], models: list[dict], claims: list[ClaimRow],
           images: dict[str, list[Path]], graph_image: bytes) -> str:
    """The page's HTML from plain values."""
    e = html.escape
    counts = {s: sum(r.status == s for r in rows) for s in STATUS_COLOURS}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>alignflow report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#212121}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;"
        "text-align:left;vertical-align:top}th{background:#f5f5f5}img{max-width:100%}"
        ".fresh{color:#2e7d32}.stale{color:#e65100}.never{color:#757575}.figs img{max-width:560px;margin:4px}"
        "code{font-size:12px}</style></head><body>",
        f"<h1>alignflow report</h1><p>Workspace <code>{e(str(root))}</code>, commit <code>{e(commit)}</code>, "
        f"profile <code>{e(profile)}</code>; written {e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}. "
        f"{len(rows)} stages: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".</p>",
        "<h2 id='graph'>Stage graph</h2>", _img(graph_image, "stage graph"),
        "<h2 id='stages'>Stages</h2><p>Status is DVC's now; the last outcome is the newest flow run's, the "
        "seconds those of the newest run that executed the stage.</p><table id='stage-table'><tr><th>stage</th>"
        "<th>status</th><th>last outcome</th><th>seconds</th><th>headline metrics</th></tr>",
    ]
    for r in rows:
        shown = "<br>".join(f"{e(k)} = {_fmt(v)}" for k, v in r.metrics.items())
        css = r.status.split()[0]
        parts.append(f"<tr><td><code>{e(r.name)}</code></td><td class='{css}'>{e(r.status)}</td>"
                     f"<td>{e(r.last_outcome)}</td><td>{_fmt(r.seconds)}</td><td>{shown}</td></tr>")
    parts.append("</table><h2 id='claims'>Claims</h2><p>From <code>studies/*.yaml</code>: a study that ran gives "
                 "the mean difference across seeds with its 95% t-interval; otherwise this workspace's single run "
                 "gives the difference for one seed and no verdict. A difference above 0 supports the claim.</p>"
                 "<table id='claims-table'><tr><th>method</th><th>claim</th><th>setting</th><th>difference</th>"
                 "<th>95% interval</th><th>verdict</th><th>source</th></tr>")
    for c in claims:
        interval = "&ndash;" if c.ci_low is None else f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}]"
        parts.append(f"<tr class='claim'><td>{e(c.method)}</td><td>{e(c.claim)}</td><td>{e(c.setting)}</td>"
                     f"<td>{_fmt(c.difference)}</td><td>{interval}</td><td>{e(c.verdict)}</td>"
                     f"<td><a href='{e(c.source)}'>{e(c.source)}</a></td></tr>")
    parts.append("</table><h2 id='models'>Registered models</h2><table id='model-table'><tr><th>name</th>"
                 "<th>aliases</th><th>versions (gate)</th></tr>")
    for m in models:
        aliases = ", ".join(f"{e(a)} &rarr; v{e(str(v))}" for a, v in sorted(m["aliases"].items()))
        versions = "<br>".join(f"v{v['version']}: gate {e(str(v['gate_passed']))} "
                               f"({e(str(v['gate_metric']))} = {e(str(v['gate_value']))})" for v in m["versions"])
        parts.append(f"<tr><td><code>{e(m['name'])}</code></td><td>{aliases}</td><td>{versions}</td></tr>")
    parts.append("</table><h2 id='figures'>Figures</h2>")
    for stage, pngs in images.items():
        parts.append(f"<details class='figs'><summary><code>{e(stage)}</code> ({len(pngs)})</summary>")
        for png in pngs:
            rel = png.relative_to(root).as_posix()
            parts.append(f"<figure style='display:inline-block'>{_img(png.read_bytes(), rel)}"
                         f"<figcaption><code>{e(rel)}</code></figcaption></figure>")
        parts.append("</details>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(root: Path, out: Path) -> Path:
    """Gather everything from the workspace and write the page atomically to `out`."""
    from alignflow.runtime import tracking
    from alignflow.runtime.params import load_params
    from pipelines.atomic import write_text_atomic

    graph = load_stage_graph(root)
    rows = stage_rows(root, graph)
    commit, dirty = tracking.git_commit(root)
    profile = str(load_params(root).get("profile", "custom"))
    page = render(root, commit + (" (uncommitted changes)" if dirty else ""), profile, rows, registered_models(root),
                  claim_rows(root), stage_images(root, graph), graph_png(graph, rows))
    write_text_atomic(out, page)
    return out
