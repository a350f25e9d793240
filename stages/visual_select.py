"""Stage `visual_select`: optimal-transport selection of RoVRM's auxiliary data, chained backwards.

The scarce visual set is the target. With `visual.select.visual_pairs: policy` (default) it is made
the way real visual preference data is: the policy answers each of the first `n_visual` visual-pool
images `policy_pairs.n_samples` times and the gold oracle ranks the answers
(`pipelines/visual/policy_pairs.py`); the held-out visual pairs are made the same way from the
visual test images (sampled with the global `seed`, so every visual_seed scores the same pairs).
With `pool` (real visual pairs, or the generator's) the first `n_visual` pool pairs and the world's
test pairs are used as they are. It
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
from pipelines.visual.policy_pairs import policy_pairs

PAIR_SOURCES = ("policy", "pool")


def _sizes(p: dict) -> tuple[int, int, int]:
    try:
        return int(p["n_visual"]), int(p["k_caption"]), int(p["k_text"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamsError(f"params.yaml: visual.select: {exc!r}") from exc


def visual_sets(ctx: StageContext, vlm, tokenizer, images, pool: list[dict], test: list[dict], n_visual: int
                ) -> tuple[list[dict], list[dict]]:
    """(scarce visual training pairs, held-out visual pairs) from the configured source."""
    block = ctx.block("visual")
    source = block["select"].get("visual_pairs")
    if source not in PAIR_SOURCES:
        raise ParamsError(f"params.yaml: visual.select.visual_pairs must be one of {PAIR_SOURCES}, got {source!r}")
    if source == "pool":
        return pool[:n_visual], test
    p = block["select"]["policy_pairs"]
    common = {k: p[k] for k in ("n_samples", "max_new_tokens", "temperature")}
    common.update(max_length=int(block["rm"]["max_length"]), label_noise=float(block["world"]["label_noise"]))
    try:
        train = policy_pairs(vlm, tokenizer, pool[:n_visual], images, per_prompt=int(p["per_prompt"]),
                             seed=ctx.seed, **common)
        held_out = policy_pairs(vlm, tokenizer, test, images, per_prompt=1, seed=int(ctx.params.get("seed", 0)),
                                **common)
    except ValueError as exc:
        raise ParamsError(f"params.yaml: visual.select.visual_pairs: policy: {exc}; real visual pairs need "
                          f"visual_pairs: pool") from exc
    if not train or not held_out:
        raise ParamsError(f"params.yaml: visual.select.visual_pairs: policy: the policy's samples gave "
                          f"{len(train)} training and {len(held_out)} held-out pairs (every sample of a prompt graded "
                          f"the same); raise policy_pairs.n_samples or temperature")
    return train, held_out


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
    vlm, tokenizer = load_vlm(str(ctx.input("policy")))
    layout = Layout.of(vlm, tokenizer, int(ctx.block("visual")["rm"]["max_length"]))
    images = ImageStore(world, image_size(vlm))
    start = time.perf_counter()
    visual, held_out = visual_sets(ctx, vlm, tokenizer, images, pool, read_jsonl(world / "visual_test.jsonl"), n_visual)
    ctx.write_machine_facts({"pairs_seconds": round(time.perf_counter() - start, 2)})
    start = time.perf_counter()
    emb = embed_sets(vlm, layout, visual, captions, texts, images, int(p["embed_batch_size"]))
    ctx.write_machine_facts({"embed_seconds": round(time.perf_counter() - start, 2)})
    metrics: dict = {"n_visual": n_visual, "visual_pairs": p["visual_pairs"], "visual_train_pairs": len(visual),
                     "visual_test_pairs": len(held_out), "k_caption": k_caption, "k_text": k_text, "pool_caption": len(captions),
                     "pool_text": len(texts),
                     "pool_text_scene_share": round(float(np.mean([r["kind"] == "scene_text" for r in texts])), 4)}
    solver = {k: p[k] for k in ("solver", "reg", "max_dense_entries", "batch_size")}
    rows, selection_metrics, selections, seconds = select_auxiliary(emb, captions, texts, k_caption, k_text, solver,
                                                                    ctx.seed)
    metrics.update(selection_metrics)
    ctx.write_machine_facts({f"{method}/seconds": s for method, s in seconds.items()})
    out = ctx.output("out")
    write_jsonl_atomic(visual, out / "visual_train.jsonl")
    write_jsonl_atomic(held_out, out / "visual_test.jsonl")
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
