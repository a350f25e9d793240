"""CTC utilities: loss with infeasibility accounting, Viterbi forced alignment, greedy decoding.

Blank is id 0 throughout (the joint vocabulary reserves it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLANK = 0


def min_frames(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest frames a CTC path needs for each target: its length plus one blank per repeat."""
    if targets.size(1) < 2:
        return target_lengths.clone()
    repeat = targets[:, 1:] == targets[:, :-1]
    inside = torch.arange(1, targets.size(1), device=targets.device)[None, :] < target_lengths[:, None]
    return target_lengths + (repeat & inside).sum(1)


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over utterances of the CTC negative log-likelihood per target token.

    Utterances with too few frames for their target (no upsampling in NAST) contribute zero
    (``zero_infinity``); the second return value is their fraction in the batch, for reporting.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    flat = torch.cat([t[:n] for t, n in zip(targets, target_lengths.tolist())]) if len(targets) else targets
    nll = F.ctc_loss(log_probs, flat, lengths, target_lengths, blank=BLANK, reduction="none", zero_infinity=True)
    infeasible = (lengths < min_frames(targets, target_lengths)).float().mean()
    return (nll / target_lengths.clamp(min=1)).mean(), infeasible


@torch.no_grad()
def viterbi_align(log_probs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                  target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best CTC path of each target through its frames, batched.

    ``log_probs`` (B, T, V) (any scores work), ``targets`` (B, L) padded, lengths (B,).
    Returns ``(tokens, scores, feasible)``: ``tokens`` (B, T) the token (blank or target id) of
    each frame on the best path, -1 on padding frames and for infeasible utterances; ``scores``
    (B,) the path's summed log-probability (-inf if infeasible); ``feasible`` (B,) bool.

    Dynamic programme over the extended label sequence (blank, y1, blank, ..., yL, blank): a state
    is reached from itself, the previous state, or two back when that skips a blank between two
    different labels. Back-pointers (0, 1 or 2 states back) are traced from the better final state.
    """
    b, t_max, _ = log_probs.shape
    dev = log_probs.device
    n_states = 2 * targets.size(1) + 1
    ext = torch.full((b, n_states), BLANK, dtype=torch.long, device=dev)
    ext[:, 1::2] = targets
    emit = log_probs.float().gather(2, ext[:, None, :].expand(b, t_max, n_states))  # (B, T, S)
    neg = torch.tensor(float("-inf"), device=dev)
    state_ids = torch.arange(n_states, device=dev)
    valid_state = state_ids[None, :] <= 2 * target_lengths[:, None]
    skip_ok = torch.zeros(b, n_states, dtype=torch.bool, device=dev)
    skip_ok[:, 2:] = (ext[:, 2:] != BLANK) & (ext[:, 2:] != ext[:, :-2])

    alpha = torch.where((state_ids[None, :] < 2) & valid_state, emit[:, 0], neg)
    back = torch.zeros(b, t_max, n_states, dtype=torch.long, device=dev)
    for t in range(1, t_max):
        prev1 = F.pad(alpha[:, :-1], (1, 0), value=float("-inf"))
        prev2 = torch.where(skip_ok, F.pad(alpha[:, :-2], (2, 0), value=float("-inf")), neg)
        best, arg = torch.stack([alpha, prev1, prev2]).max(dim=0)
        back[:, t] = arg
        new = torch.where(valid_state, best + emit[:, t], neg)
        alpha = torch.where((t < lengths)[:, None], new, alpha)

    last_blank = 2 * target_lengths
    last_label = (last_blank - 1).clamp(min=0)
    score_blank = alpha.gather(1, last_blank[:, None]).squeeze(1)
    score_label = torch.where(target_lengths > 0, alpha.gather(1, last_label[:, None]).squeeze(1), neg)
    scores = torch.maximum(score_blank, score_label)
    state = torch.where(score_label > score_blank, last_label, last_blank)

    path = torch.full((b, t_max), -1, dtype=torch.long, device=dev)
    for t in range(t_max - 1, -1, -1):
        active = t < lengths
        path[:, t] = torch.where(active, state, path[:, t])
        step = back[:, t].gather(1, state[:, None]).squeeze(1)
        state = torch.where(active, state - step, state)
    feasible = torch.isfinite(scores)
    tokens = ext.gather(1, path.clamp(min=0))
    tokens = tokens.masked_fill((path < 0) | ~feasible[:, None], -1)
    return tokens, scores, feasible


def collapse(ids: list[int]) -> list[int]:
    """CTC collapse: merge repeats, then drop blanks."""
    out, prev = [], None
    for i in ids:
        if i != prev and i != BLANK:
            out.append(i)
        prev = i
    return out


@torch.no_grad()
def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Argmax per frame, merge repeats, drop blanks; ``logits`` (B, T, V) -> one id list per row."""
    best = logits.argmax(-1)  # (B, T)
    keep = best != BLANK
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= torch.arange(best.size(1), device=best.device)[None, :] < lengths[:, None]
    rows = best.masked_fill(~keep, -1).tolist()
    return [[i for i in row if i >= 0] for row in rows]
