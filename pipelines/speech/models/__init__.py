"""Speech translation models: NAST (CTC-based non-autoregressive, decoder-free) and an AR baseline.

Entry points: ``build_model``, ``save_model``, ``load_model``, ``collate``; models expose
``loss(batch) -> dict`` and decoding (``NAST.decode``, ``ARST.greedy_decode`` / ``beam_search``).
"""

from pipelines.speech.models.ar import ARST
from pipelines.speech.models.batching import collate
from pipelines.speech.models.config import DEFAULTS, model_config
from pipelines.speech.models.ctc import greedy_decode, viterbi_align
from pipelines.speech.models.io import build_model, load_model, save_model
from pipelines.speech.models.nast import NAST
from pipelines.speech.models.subsampling import padding_mask

__all__ = [
    "ARST", "DEFAULTS", "NAST", "build_model", "collate", "greedy_decode", "load_model", "model_config",
    "padding_mask", "save_model", "viterbi_align",
]
