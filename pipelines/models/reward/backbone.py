"""Hidden state of the last real token of a causal LM, the readout both reward models use."""

from __future__ import annotations

import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last attended token per row (works for left or right padding)."""
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * pos).argmax(dim=1)


def last_hidden(causal_lm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Final hidden state ``[n, hidden]`` at each row's last real token.

    Runs the base transformer only (no full-sequence vocabulary projection), which is most
    of the saving when reading one position per sequence.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    base = getattr(causal_lm, "base_model", None)
    if base is None or base is causal_lm:
        out = causal_lm(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False
        )
        hidden = out.hidden_states[-1]
    else:
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)]
