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
from pipelines.data.jsonl import write_jsonl_atomic
from pipelines.evaluation.plots import plot_grouped_bars, write_csv
from pipelines.selection import chained_select, selection_distance
from pipelines.selection.ot_select import METHODS
from pipelines.visual.embed import embed_pairs
from pipelines.visual.encoding import Layout
from pipelines.visual.vlm import image_size, load_vlm
from stages.visual_common import POLICY, SELECT, WORLD, ImageStore, world_records
from stages.visual_plots import plot_embedding_map


def _sizes(p: dict, n_pool: int, n_caption: int, n_text: int) -> tuple[int, int, int]:
    try:
        n_visual, k_caption, k_text = int(p["n_visual"]), int(p["k_caption"]), int(p["k_text"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: visual.select: {exc!r}") from exc
    for key, value, limit in (("n_visual", n_visual, n_pool), ("k_caption", k_caption, n_caption),
                              ("k_text", k_text, n_text)):
        if not 1 <= value <= limit:
            raise ParamsError(f"params.yaml: visual.select.{key} = {value} must be in [1, {limit}] (the pool size)")
    return n_visual, k_caption, k_text


def run(ctx: StageContext) -> None:
    ctx.use_seed("visual_seed")
    p = ctx.block("visual")["select"]
    pool, captions, texts = (world_records(ctx, f) for f in ("visual_pool.jsonl", "caption_pool.jsonl", "text_pool.jsonl"))
    n_visual, k_caption, k_text = _sizes(p, len(pool), len(captions), len(texts))
    visual = pool[:n_visual]
    vlm, tokenizer = load_vlm(str(ctx.root / POLICY))
    layout = Layout.of(vlm, tokenizer, int(ctx.block("visual")["rm"]["max_length"]))
    images = ImageStore(ctx.root / WORLD, image_size(vlm))
    start = time.perf_counter()
    bs = int(p["embed_batch_size"])
    emb = {"visual": embed_pairs(vlm, layout, visual, images, bs, "embed visual"),
           "caption": embed_pairs(vlm, layout, captions, lambda r: None, bs, "embed captions"),
           "text": embed_pairs(vlm, layout, texts, lambda r: None, bs, "embed text")}
    ctx.write_machine_facts({"embed_seconds": round(time.perf_counter() - start, 2)})
    metrics: dict = {"n_visual": n_visual, "k_caption": k_caption, "k_text": k_text, "pool_caption": len(captions),
                     "pool_text": len(texts),
                     "pool_text_scene_share": round(float(np.mean([r["kind"] == "scene_text" for r in texts])), 4)}
    solver = {k: p[k] for k in ("solver", "reg", "max_dense_entries", "batch_size")}
    selections: dict = {}
    rows = []
    for method in METHODS:
        levels = [(emb["caption"], k_caption if method != "all" else len(captions)),
                  (emb["text"], k_text if method != "all" else len(texts))]
        cap_sel, text_sel = chained_select(levels, emb["visual"], method=method, seed=ctx.seed,
                                           **(solver if method == "ot" else {}))
        chosen_text = [texts[i] for i in text_sel.indices]
        row = {"method": method,
               "caption_distance": selection_distance(emb["caption"][cap_sel.indices], emb["visual"], seed=ctx.seed),
               "text_distance": selection_distance(emb["text"][text_sel.indices], emb["visual"], seed=ctx.seed),
               "text_scene_share": float(np.mean([r["kind"] == "scene_text" for r in chosen_text]))}
        rows.append(row)
        ctx.write_machine_facts({f"{method}/seconds": round(cap_sel.seconds + text_sel.seconds, 5)})
        metrics.update({f"{method}/{k}": round(v, 5) for k, v in row.items() if k != "method"})
        selections[method] = {"caption": [captions[i]["id"] for i in cap_sel.indices],
                              "text": [r["id"] for r in chosen_text]}
    out = ctx.output(SELECT)
    write_jsonl_atomic(visual, out / "visual_train.jsonl")
    write_json_atomic(out / "selections.json", selections)
    write_csv(rows, out / "plots" / "selection.csv", ["method", "caption_distance", "text_distance",
                                                      "text_scene_share"])
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
    stage_main("visual_select", run, blocks=("visual",))
