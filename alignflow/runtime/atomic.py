"""Clean-up after killed stage runs: the leftovers of atomic writes whose writer has died.

The writers themselves (`write_text_atomic(path, text)`, `atomic_dir`, `replace_dir`, ...) live in
`pipelines/atomic.py`, the one home of atomic file helpers; this module only knows how a stage output's
temporary and moved-aside copies are named beside it and what to do with them when their writer is gone.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pipelines.atomic import pid_alive


def remove_dead_temps(final: str | os.PathLike) -> list[Path]:
    """Delete `.NAME.tmp-PID*` / `.NAME.old-PID` leftovers beside `final` whose writer has died.

    `.NAME.old-PID` is the previous output a killed commit had moved aside; it is removed only when
    `final` exists (otherwise it is moved back, so the workspace keeps the last good output).
    Returns what was removed or restored.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)")
    handled = []
    for entry in sorted(final.parent.iterdir()):
        m = pattern.match(entry.name)
        if not m or pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not (final.exists() or final.is_symlink()):
            os.replace(entry, final)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        handled.append(entry)
    return handled
