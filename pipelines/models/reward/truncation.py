"""One truncation rule shared by every reward-model input, so over-long text never crashes.

Rule (token level, fixed template tokens are never cut):
1. If prompt + responses fit the budget, nothing is cut.
2. Otherwise responses are cut first, from the right. Together they may use whatever the
   full prompt leaves over, but never less than ``response_floor`` (default: half) of the
   budget. That response budget is shared equally (water-filling: a short response gives
   its unused share to the other).
3. The prompt is then cut from the LEFT (its end, nearest the responses, is kept) to fit
   what the responses left over.
"""

from __future__ import annotations

from typing import Sequence


def fair_shares(lengths: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` over items as equally as possible, never above an item's length.

    Leftover units of an uneven split go to the earlier items, so the result is
    deterministic.
    """
    budget = max(0, int(budget))
    shares = [0] * len(lengths)
    open_idx = [i for i, n in enumerate(lengths) if n > 0]
    while open_idx and budget > 0:
        each, extra = divmod(budget, len(open_idx))
        if each == 0:  # fewer units than open items: one each, in order
            for i in open_idx[:extra]:
                shares[i] += 1
            break
        still_open = []
        for i in open_idx:
            give = min(each, lengths[i] - shares[i])
            shares[i] += give
            budget -= give
            if shares[i] < lengths[i]:
                still_open.append(i)
        open_idx = still_open
    return shares


def allocate(
    prompt_len: int, response_lens: Sequence[int], budget: int, response_floor: float = 0.5
) -> tuple[int, list[int]]:
    """Tokens to keep of the prompt (from its end) and of each response (from its start)."""
    if budget < 0:
        raise ValueError(f"negative token budget {budget}: max_length is below the template size")
    total = prompt_len + sum(response_lens)
    if total <= budget:
        return prompt_len, list(response_lens)
    response_budget = max(budget - prompt_len, int(budget * response_floor))
    kept = fair_shares(response_lens, min(response_budget, budget))
    return min(prompt_len, budget - sum(kept)), kept


def keep_left(ids: list[int], n: int) -> list[int]:
    """Last ``n`` tokens (prompt truncation keeps the end of the prompt)."""
    return ids[len(ids) - n :] if n > 0 else []
