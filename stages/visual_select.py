"""Stage `visual_select`: optimal-transport selection of RoVRM's auxiliary data, chained backwards.

The scarce visual set (the first `visual.select.n_visual` pairs of the visual pool) is the target:
it selects `k_caption` caption-based pairs, and those select `k_text` text pairs, all embedded by the
visual policy (`pipelines/visual/embed.py`), cost 1 - cosine, plan from POT. Baselines at equal K:
random and nearest-to-centroid; `all` keeps every pool sample. Writes the visual training set and
each method's selected ids, and compares the selections: OT distance to the visual targets and the
share of the text selection that is about scenes at all.
"""
from __future__ import annotations

import time

import numpy as np

from pipelines.atomic import write_json_atomic
from alignflow.runtime.errors import ParamsError
from alignflow.runtime.stage import StageContext, stage_main
from pipelines.data.jsonl import read_jsonl, write_jsonl_atomic
from pipelines.evaluation.plots import plot_grouped_bars, write_csv
from pipelines.models.vlm.encoding import Layout
from pipelines.models.vlm.llava import image_size, load_vlm
from pipelines.visual.aux_select import SELECTION_COLUMNS, check_sizes, embed_sets, select_auxiliary
from pipelines.visual.images import ImageStore
from pipelines.visual.plots import plot_embedding_map


def _sizes(p: dict) -> tuple[int, int, int]:
    try:
        return int(p["n_visual"]), int(p["k_caption"]), int(p["k_text"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: visual.select: {exc!r}") from exc


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    p = ctx.block("visual")["select"]
    world = ctx.input("world")
    pool, captions, texts = (read_jsonl(world / f) for f in ("visual_pool.jsonl", "caption_pool.jsonl", "text_pool.jsonl"))
    n_visual, k_caption, k_text = _sizes(p)
    try:
        check_sizes(n_visual, k_caption, k_text, len(pool), len(captions), len(texts))
    except ValueError as exc:
        raise ParamsError(f"params.yaml: visual.select.{exc}") from exc
    visual = pool[:n_visual]
    vlm, tokenizer = load_vlm(str(ctx.input("policy")))
    layout = Layout.of(vlm, tokenizer, int(ctx.block("visual")["rm"]["max_length"]))
    images = ImageStore(world, image_size(vlm))
    start = time.perf_counter()
    emb = embed_sets(vlm, layout, visual, captions, texts, images, int(p["embed_batch_size"]))
    ctx.write_machine_facts({"embed_seconds": round(time.perf_counter() - start, 2)})
    metrics: dict = {"n_visual": n_visual, "k_caption": k_caption, "k_text": k_text, "pool_caption": len(captions),
                     "pool_text": len(texts),
                     "pool_text_scene_share": round(float(np.mean([r["kind"] == "scene_text" for r in texts])), 4)}
    solver = {k: p[k] for k in ("solver", "reg", "max_dense_entries", "batch_size")}
    rows, selection_metrics, selections, seconds = select_auxiliary(emb, captions, texts, k_caption, k_text, solver,
                                                                    ctx.seed)
    metrics.update(selection_metrics)
    ctx.write_machine_facts({f"{method}/seconds": s for method, s in seconds.items()})
    out = ctx.output("out")
    write_jsonl_atomic(visual, out / "visual_train.jsonl")
    write_json_atomic(out / "selections.json", selections)
    write_csv(rows, out / "plots" / "selection.csv", SELECTION_COLUMNS)
    plot_grouped_bars([r["method"] for r in rows],
                      {"caption OT distance": [r["caption_distance"] for r in rows],
                       "text OT distance": [r["text_distance"] for r in rows],
                       "text scene share": [r["text_scene_share"] for r in rows]},
                      out / "plots" / "selection.png", "Auxiliary-data selection vs the visual targets", "value")
    ot_ids = {"caption": set(selections["ot"]["caption"]), "text": set(selections["ot"]["text"])}
    plot_embedding_map(emb, {"caption": [r["id"] in ot_ids["caption"] for r in captions],
                             "text": [r["id"] in ot_ids["text"] for r in texts]},
                       out / "plots" / "embedding_map.png", seed=ctx.seed)
    ctx.write_metrics(out, metrics)


if __name__ == "__main__":
    stage_main("visual_select", run, blocks=("visual",), inputs=("world", "policy"), outputs=("out",))
