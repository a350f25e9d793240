"""Seeding and the random state a training run carries across a checkpoint.

`set_seed` seeds python, numpy and torch once at the start of a run. Example order comes from
`IndexStream`, a seeded `torch.Generator` permutation consumed as one continuous stream across
epochs, so `batch 4 x accum 1` and `batch 2 x accum 2` see the same examples per optimizer step.
The python/numpy states are turned into JSON-able lists (they go into `state.json`); the torch
states are tensors (they go into `rng.safetensors`).
"""

from __future__ import annotations

import random

import torch


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy (if installed) and torch; request deterministic kernels.

    ``warn_only`` keeps ops without a deterministic implementation usable.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


class IndexStream:
    """Endless stream of dataset indices: seeded permutations, one per epoch."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("train_data is empty")
        self.n = n
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.pos = 0
        self.perm = torch.randperm(n, generator=self.gen)

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if self.pos >= self.n:
                self.epoch += 1
                self.pos = 0
                self.perm = torch.randperm(self.n, generator=self.gen)
            m = min(k - len(out), self.n - self.pos)
            out.extend(self.perm[self.pos : self.pos + m].tolist())
            self.pos += m
        return out

    def tensors(self) -> dict:
        return {"sampler_perm": self.perm.clone(), "sampler_generator": self.gen.get_state()}

    def meta(self) -> dict:
        return {"n": self.n, "epoch": self.epoch, "pos": self.pos}

    def restore(self, tensors: dict, meta: dict) -> None:
        if meta["n"] != self.n:
            raise ValueError(f"checkpoint was made for a dataset of {meta['n']} examples, got {self.n}")
        self.perm = tensors["sampler_perm"].clone()
        self.gen.set_state(tensors["sampler_generator"])
        self.epoch, self.pos = meta["epoch"], meta["pos"]


def python_rng_state() -> dict:
    """The python (and numpy, if installed) global RNG states as JSON-able lists."""
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss]}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    except ImportError:
        pass
    return state


def restore_python_rng(state: dict) -> None:
    """Inverse of `python_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        try:
            import numpy as np

            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
        except ImportError:
            pass
