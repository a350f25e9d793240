"""How many torch threads a stage may use: what its params ask for, within the cores it was given.

Some params blocks name a thread count (`st.threads`, `lisa.threads`, timing blocks) because their
numbers depend on it. `alignflow run --jobs N` gives each stage a share of the cores through
OMP_NUM_THREADS (alignflow/stage_process.py), as does torchrun per rank and any user who sets it: a
stage asking for more than that would oversubscribe the cores it shares with the stages running
beside it (measured: a 2-thread stage beside another stage on 2 cores ran 2-3x slower than on one
thread), so the variable, when set, caps the params' count.
"""
from __future__ import annotations

import os


def granted_threads() -> int | None:
    """OMP_NUM_THREADS as a positive int, or None when unset or not a number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def capped_threads(requested: int) -> int:
    """`requested` threads, or fewer when this process was given fewer (never below one)."""
    granted = granted_threads()
    wanted = max(1, int(requested))
    return min(wanted, granted) if granted else wanted
