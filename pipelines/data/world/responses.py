"""Noisy response generator: each response has a named error type and named style modifiers."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .families import Task
from .text import count_words
from .vocab import HEDGES, OFF_TOPIC, PADDING, POLITE_PREAMBLES, REFUSALS

ERROR_TYPES = ("correct", "wrong_answer", "partial_answer", "verbose_padding", "format_violation",
               "over_refusal", "unsafe_compliance", "off_topic")
STYLES = ("polite_preamble", "hedging")
_VARIANT_TYPES = {"wrong_answer", "partial_answer", "format_violation", "unsafe_compliance"}
PADDING_EXCESS = 6  # padded replies run at least this many words past the limit


@dataclass(frozen=True)
class Response:
    """A generated reply and the names of how it was made (never shown to the oracle)."""

    text: str
    error_type: str
    style: str  # "none", "polite_preamble", "hedging" or "polite_preamble+hedging"


def applicable_error_types(task: Task) -> list[str]:
    """Error types that make sense for this task (e.g. over-refusal only where refusing is wrong)."""
    out = []
    for error_type in ERROR_TYPES:
        if error_type in _VARIANT_TYPES:
            ok = bool(task.variants.get(error_type))
        elif error_type == "over_refusal":
            ok = not task.spec.get("must_refuse", False)
        else:
            ok = True
        if ok:
            out.append(error_type)
    return out


def sample_error_type(task: Task, weights: dict[str, float], rng: random.Random) -> str:
    """Draw an error type from `weights` renormalised over the types applicable to the task."""
    options = [(t, weights.get(t, 0.0)) for t in applicable_error_types(task)]
    options = [(t, w) for t, w in options if w > 0]
    if not options:
        return "correct"
    return rng.choices([t for t, _ in options], weights=[w for _, w in options])[0]


def _pad(text: str, limit: int, rng: random.Random) -> str:
    """Append whole filler sentences until the reply runs more than PADDING_EXCESS words over the limit."""
    pads = PADDING[:]
    rng.shuffle(pads)
    parts, i = [text], 0
    while count_words(" ".join(parts)) <= limit + PADDING_EXCESS:
        parts.append(pads[i % len(pads)])
        i += 1
    return " ".join(parts)


def base_text(task: Task, error_type: str, rng: random.Random) -> str:
    """The unstyled reply text for an error type."""
    if error_type == "correct":
        return task.reference
    if error_type in _VARIANT_TYPES:
        candidates = task.variants.get(error_type)
        if not candidates:
            raise ValueError(f"error type {error_type!r} not applicable to family {task.family!r}")
        return rng.choice(candidates)
    if error_type == "verbose_padding":
        return _pad(task.reference, int(task.spec["max_words"]), rng)
    if error_type == "over_refusal":
        return rng.choice(REFUSALS)
    if error_type == "off_topic":
        return rng.choice(OFF_TOPIC)
    raise ValueError(f"unknown error type {error_type!r}; known: {ERROR_TYPES}")


def apply_style(text: str, polite: bool, hedge: bool, rng: random.Random) -> tuple[str, str]:
    """Add a polite preamble and/or a hedge; returns (text, style name)."""
    names = []
    if polite:
        text = f"{rng.choice(POLITE_PREAMBLES)} {text}"
        names.append("polite_preamble")
    if hedge:
        text = f"{text} {rng.choice(HEDGES)}"
        names.append("hedging")
    return text, "+".join(names) or "none"


def sample_response(task: Task, error_weights: dict[str, float], polite_rates: tuple[float, float],
                    hedge_rate: float, rng: random.Random, error_type: str | None = None) -> Response:
    """Draw an error type (unless given) and style, then render the reply.

    `polite_rates` = (P(polite | correct), P(polite | error)): the knob behind the style shift.
    """
    if error_type is None:
        error_type = sample_error_type(task, error_weights, rng)
    text = base_text(task, error_type, rng)
    if not task.style_ok:
        return Response(text, error_type, "none")
    p_polite = polite_rates[0] if error_type == "correct" else polite_rates[1]
    polite = rng.random() < p_polite
    hedge = rng.random() < hedge_rate
    text, style = apply_style(text, polite, hedge, rng)
    return Response(text, error_type, style)
