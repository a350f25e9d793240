"""Choosing RoVRM's auxiliary data: the visual set selects caption pairs, which select text pairs.

Every pair is embedded by the visual policy (`embed.py`); OT and the equal-K baselines of
`pipelines/selection` pick from the pools; each method's picks are compared by their OT distance
to the visual targets and by the share of the kept text that is about scenes at all.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from pipelines.models.vlm.encoding import Layout
from pipelines.selection import chained_select, selection_distance
from pipelines.selection.ot_select import METHODS

from .embed import embed_pairs

SELECTION_COLUMNS = ["method", "caption_distance", "text_distance", "text_scene_share"]


def check_sizes(n_visual: int, k_caption: int, k_text: int, n_pool: int, n_caption: int, n_text: int) -> None:
    """Each size within [1, its pool's size]; the error names the size that is not."""
    for key, value, limit in (("n_visual", n_visual, n_pool), ("k_caption", k_caption, n_caption),
                              ("k_text", k_text, n_text)):
        if not 1 <= value <= limit:
            raise ValueError(f"{key} = {value} must be in [1, {limit}] (the pool size)")


def embed_sets(vlm, layout: Layout, visual: Sequence[dict], captions: Sequence[dict], texts: Sequence[dict],
               images: Callable, batch_size: int) -> dict[str, np.ndarray]:
    """Policy embeddings of the visual targets (with their images) and of the two text-only pools."""
    return {"visual": embed_pairs(vlm, layout, visual, images, batch_size, "embed visual"),
            "caption": embed_pairs(vlm, layout, captions, lambda r: None, batch_size, "embed captions"),
            "text": embed_pairs(vlm, layout, texts, lambda r: None, batch_size, "embed text")}


def select_auxiliary(emb: Mapping[str, np.ndarray], captions: Sequence[dict], texts: Sequence[dict], k_caption: int,
                     k_text: int, solver: Mapping, seed: int) -> tuple[list[dict], dict, dict, dict]:
    """(rows, metrics, selections, seconds) of every selection method, chained caption -> text.

    `selections[method]` holds the kept caption and text ids; `solver` goes to the OT method only;
    `seconds` (method -> wall time) is a machine fact, not a metric.
    """
    metrics, selections, seconds, rows = {}, {}, {}, []
    for method in METHODS:
        levels = [(emb["caption"], k_caption if method != "all" else len(captions)),
                  (emb["text"], k_text if method != "all" else len(texts))]
        cap_sel, text_sel = chained_select(levels, emb["visual"], method=method, seed=seed,
                                           **(dict(solver) if method == "ot" else {}))
        chosen_text = [texts[i] for i in text_sel.indices]
        row = {"method": method,
               "caption_distance": selection_distance(emb["caption"][cap_sel.indices], emb["visual"], seed=seed),
               "text_distance": selection_distance(emb["text"][text_sel.indices], emb["visual"], seed=seed),
               "text_scene_share": float(np.mean([r["kind"] == "scene_text" for r in chosen_text]))}
        rows.append(row)
        seconds[method] = round(cap_sel.seconds + text_sel.seconds, 5)
        metrics.update({f"{method}/{k}": round(v, 5) for k, v in row.items() if k != "method"})
        selections[method] = {"caption": [captions[i]["id"] for i in cap_sel.indices],
                              "text": [r["id"] for r in chosen_text]}
    return rows, metrics, selections, seconds

