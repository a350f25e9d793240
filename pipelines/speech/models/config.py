"""Model configuration: one flat dict of plain values, so it round-trips through JSON.

``model_config(kind, overrides)`` merges overrides onto the defaults of a kind and validates
the result. Unknown keys are an error (a typo would otherwise silently train the default).
Layer indices are 1-based: ``src_ctc_layers=[2]`` puts a CTC head after acoustic layer 2.
"""

from __future__ import annotations

import copy

KINDS = ("nast", "ar")

# Tiny CPU-sized defaults shared by both kinds (the paper uses d=512, 12+12 layers).
_COMMON = {
    "n_mels": 80,
    "d_model": 144,
    "n_heads": 4,
    "ffn_dim": 576,
    "dropout": 0.1,
    # 4x convolutional subsampling: two stride-2 Conv1d + GLU (fairseq S2T style)
    "subsample_channels": 256,
    "subsample_kernel": 5,
    "max_source_positions": 6000,  # after subsampling: 6000 frames = 4 min of speech
    # acoustic encoder
    "acoustic_type": "conformer",  # or "transformer"
    "acoustic_layers": 4,
    "conv_kernel": 15,  # Conformer depthwise conv
    "src_ctc_layers": [2],  # intermediate source-CTC layers (the top always has one)
    # textual encoder (no positional embedding)
    "textual_layers": 4,
    "tgt_ctc_layers": [2],  # intermediate target-CTC layers
    # CTC loss weights (intermediate losses are averaged over their layers first)
    "ctc_weight_src_top": 1.0,
    "ctc_weight_src_inter": 1.0,
    "ctc_weight_tgt_top": 1.0,
    "ctc_weight_tgt_inter": 1.0,
    # prediction-aware encoding at intermediate CTC layers: h <- LN(h) + softmax(logits) @ E
    "pae": True,
    # cross-layer attention: textual layers k+1.. attend to the output of textual layer k
    "cross_layer": True,
    "cross_layer_from": 1,  # k (paper: 3 of 12 layers)
    "self_attn_drop": 0.1,  # P(skip self-attention) in layers with cross-layer attention, training only
    # glancing-style curriculum at intermediate target-CTC layers (needs pae)
    "curriculum": True,
    "curriculum_p": 0.8,
    "curriculum_smoothing": 0.1,
}

_AR_ONLY = {
    "decoder_layers": 3,
    "max_target_positions": 1024,
    "label_smoothing": 0.1,
    "tie_embeddings": True,
    # auxiliary CTC: "source" (acoustic top), "target" (textual top), "both", "none". "both": the decoder
    # attends to the textual top, and with no loss of its own there (plain "source") Adam drives that memory
    # to one frame-constant vector within ~20 steps (decoder = language model, BLEU < 3 at 2000 steps).
    "ar_ctc": "both",
    "ar_ctc_weight": 0.2,
}

DEFAULTS = {
    "nast": dict(_COMMON),
    # The AR baseline keeps the encoder architecture but none of the NAST-specific tricks:
    # no intermediate CTC, so no PAE, no curriculum, and plain textual layers.
    "ar": {
        **_COMMON,
        **_AR_ONLY,
        "src_ctc_layers": [],
        "tgt_ctc_layers": [],
        "pae": False,
        "cross_layer": False,
        "curriculum": False,
    },
}


def model_config(kind: str, overrides: dict | None = None) -> dict:
    """Defaults of ``kind`` updated with ``overrides``, validated. Returns a new dict."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = copy.deepcopy(DEFAULTS[kind])
    unknown = set(overrides or {}) - set(cfg)
    if unknown:
        raise ValueError(f"unknown config keys for {kind}: {sorted(unknown)}")
    cfg.update(copy.deepcopy(overrides or {}))
    validate(kind, cfg)
    return cfg


def validate(kind: str, cfg: dict) -> None:
    """Raise ValueError on inconsistent settings."""
    if cfg["d_model"] % cfg["n_heads"]:
        raise ValueError("d_model must be divisible by n_heads")
    if cfg["acoustic_type"] not in ("conformer", "transformer"):
        raise ValueError("acoustic_type must be 'conformer' or 'transformer'")
    for key, n in (("src_ctc_layers", cfg["acoustic_layers"]), ("tgt_ctc_layers", cfg["textual_layers"])):
        if any(not 1 <= i < n for i in cfg[key]):
            raise ValueError(f"{key} must be intermediate layers in [1, {n - 1}], got {cfg[key]}")
        cfg[key] = sorted(set(int(i) for i in cfg[key]))
    if cfg["cross_layer"] and not 1 <= cfg["cross_layer_from"] < cfg["textual_layers"]:
        raise ValueError("cross_layer_from must be in [1, textual_layers - 1]")
    if cfg["curriculum"] and not cfg["pae"]:
        raise ValueError("curriculum replaces the distributions fed to PAE: set pae=True or curriculum=False")
    if not 0.0 <= cfg["curriculum_p"] <= 1.0 or not 0.0 <= cfg["curriculum_smoothing"] <= 1.0:
        raise ValueError("curriculum_p and curriculum_smoothing must be in [0, 1]")
    if kind == "ar" and cfg["ar_ctc"] not in ("source", "target", "both", "none"):
        raise ValueError("ar_ctc must be 'source', 'target', 'both' or 'none'")
