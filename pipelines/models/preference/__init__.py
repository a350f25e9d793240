"""LRHP: one vector per preference pair (prompt, chosen, rejected), learned from preference labels and
kinds of preference (arXiv 2410.04503; the design is ours where the paper is silent, docs/lrhp.md).

`encoder` holds the model (backbone + <pair> token + projection + preference head), `objectives` the
preference and supervised-contrastive losses, `pairs` the input files and kinds of preference.
"""

from pipelines.models.preference.encoder import PAIR_TOKEN, PairEncoder, pair_ids
from pipelines.models.preference.objectives import collate_pairs, make_lrhp_loss, pair_examples, supcon_loss
from pipelines.models.preference.pairs import gold_margin, kind_index, kind_of, read_pairs

__all__ = ["PAIR_TOKEN", "PairEncoder", "collate_pairs", "gold_margin", "kind_index", "kind_of", "make_lrhp_loss",
           "pair_examples", "pair_ids", "read_pairs", "supcon_loss"]
