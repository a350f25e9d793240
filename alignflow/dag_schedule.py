"""Which stages may start now: the bookkeeping behind `alignflow run --jobs N`.

The flow hands each ready stage to Prefect's task runner (`task.submit(..., wait_for=...)`) and tells
this schedule when one finished. A stage is ready when every stage it reads from has succeeded; at
most `jobs` run at once. `--jobs 1` runs exactly the serial topological order; with more jobs, among
ready stages the one heading the longest chain of stages still to run starts first (ties: serial
order), so a long branch is not left to run alone at the end while short ones went first (the
classic highest-level-first list-scheduling rule; stage durations are not known in advance). Only ready stages are submitted: a stage
waiting on a future inside a worker thread would hold one of the N workers doing nothing (and N such
waiters could hold them all). A failed stage stops its descendants only: they are reported as not run,
naming the failed stages above them; independent branches go on.
"""
from __future__ import annotations

from typing import Iterable, Mapping


class DagSchedule:
    def __init__(self, order: Iterable[str], needs: Mapping[str, Iterable[str]], jobs: int):
        """`order`: the stages to run, in serial order; `needs[s]`: the stages among them that `s` reads from."""
        self.order = list(order)
        members = set(self.order)
        self.needs = {s: {n for n in needs.get(s, ()) if n in members} for s in self.order}
        self.jobs = max(1, int(jobs))
        self.waiting = list(self.order)
        self.running: list[str] = []
        self.succeeded: list[str] = []
        self.failed: list[str] = []
        self.blocked: dict[str, list[str]] = {}  # stage -> the failed stages upstream of it
        self.chain = self._chain_lengths()
        if self.jobs > 1:
            position = {s: i for i, s in enumerate(self.order)}
            self.waiting.sort(key=lambda s: (-self.chain[s], position[s]))

    def _chain_lengths(self) -> dict[str, int]:
        """Stages on the longest path from each stage to the end of the run, itself included."""
        below: dict[str, list[str]] = {s: [] for s in self.order}
        for stage, needs in self.needs.items():
            for above in needs:
                below[above].append(stage)
        chain: dict[str, int] = {}
        for stage in reversed(self.order):  # the serial order is topological: what is below comes later
            chain[stage] = 1 + max((chain[b] for b in below[stage]), default=0)
        return chain

    def ready(self) -> list[str]:
        """Stages to start now, by priority (marked running); blocked ones are set aside."""
        started = []
        for name in list(self.waiting):
            failed_above = sorted({f for n in self.needs[name] for f in self._failures_at(n)})
            if failed_above:
                self.waiting.remove(name)
                self.blocked[name] = failed_above
                continue
            if len(self.running) >= self.jobs:
                continue  # keep scanning: a stage below a failure is still set aside now
            if all(n in self.succeeded for n in self.needs[name]):
                self.waiting.remove(name)
                self.running.append(name)
                started.append(name)
        return started

    def _failures_at(self, name: str) -> list[str]:
        if name in self.failed:
            return [name]
        return self.blocked.get(name, [])

    def finish(self, name: str, ok: bool) -> None:
        self.running.remove(name)
        (self.succeeded if ok else self.failed).append(name)

    def stop(self) -> list[str]:
        """Start nothing more (an interrupt): the stages that will not run."""
        left, self.waiting = self.waiting, []
        return left

    @property
    def done(self) -> bool:
        return not self.running and not self.waiting

    @property
    def max_concurrent(self) -> int:
        """The most stages that can run at once: `jobs`, or fewer when there are fewer stages."""
        return max(1, min(self.jobs, len(self.order)))
