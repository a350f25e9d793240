"""Attention compression: LiSA (lightweight substitute for self-attention) for Llama and BERT.

families (where layers/attention live), analysis (attention similarity and layer sensitivity),
lisa (the substitute modules and `apply_lisa`), objective (LM loss/perplexity on token ids),
train (fit LiSA parameters), budget (what selection holds: perplexity, or embedding similarity for
models without an LM head), select (greedy layer choice), io (save / `load_lisa_model`).
"""
