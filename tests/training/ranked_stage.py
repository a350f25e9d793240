"""A tiny training stage for the multi-process tests: run as `python -m tests.training.ranked_stage --out PATH`.

Its loss is a mean over a varying number of "tokens" per example (a masked squared error that
reports `target_tokens`), so ranks hold different token counts and only exact token weighting
reproduces the one-process run. `toy.train` is a full `train:` block (`processes`, `deepspeed`...).
Test-only side channels: `RANKED_TRACE_DIR` gets `rank<R>.json` (example indices per micro-step),
`RANKED_CRASH_AFTER` makes every rank fail after that many micro-steps (a checkpoint exists by then).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.training.config import config_from_block
from pipelines.training.loop import train


def toy_data(seed: int, n: int) -> list[dict]:
    """`n` examples: 6 features, 4 targets of which the first 1-4 count (the example's tokens)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    y = x[:, :4] * 2.0 - x[:, 2:].sum(1, keepdim=True) + 0.1 * torch.randn(n, 4, generator=gen)
    counts = torch.randint(1, 5, (n,), generator=gen)
    mask = (torch.arange(4)[None, :] < counts[:, None]).float()
    return [{"x": x[i], "y": y[i], "mask": mask[i], "idx": i} for i in range(n)]


class ToyNet(torch.nn.Module):
    """A two-layer net plus a layer no loss reaches (its gradient stays None, as GRAM's head in stage 1)."""

    def __init__(self):
        super().__init__()
        self.inp, self.out, self.unused = torch.nn.Linear(6, 16), torch.nn.Linear(16, 4), torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.inp(x)))


def toy_model(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ToyNet()


def token_mean_loss(model, batch):
    """Squared error averaged over the batch's unmasked targets; reports the count as `target_tokens`."""
    err = (model(batch["x"]) - batch["y"]) ** 2 * batch["mask"]
    n = batch["mask"].sum()
    loss = err.sum() / n
    return loss, {"loss": float(loss.detach()), "target_tokens": float(n)}


def run(ctx: StageContext) -> None:
    p = ctx.block("toy")
    if int(p["n"]) < 1:
        raise ValueError(f"params.yaml: toy.n: expected at least 1 example, got {p['n']}")
    data = toy_data(ctx.seed, int(p["n"]))
    model = toy_model(ctx.seed)
    out = ctx.output("out")
    cfg = config_from_block(p["train"], ctx.seed, "toy.train")
    seen: list[list[int]] = []
    crash_after = int(os.environ.get("RANKED_CRASH_AFTER", "0"))

    def loss_fn(m, batch):
        if crash_after and len(seen) >= crash_after:
            raise RuntimeError("crash requested by RANKED_CRASH_AFTER")
        seen.append([int(i) for i in batch["idx"]])
        return token_mean_loss(m, batch)

    result = train(model, data, loss_fn, cfg, checkpoint_dir=str(ctx.checkpoint_dir("toy")), progress=False)
    trace = os.environ.get("RANKED_TRACE_DIR")
    if trace:
        rank = int(os.environ.get("RANK", 0))
        Path(trace, f"rank{rank}.json").write_text(json.dumps(seen))
    ctx.write_machine_facts({"resumed_from_step": result.resumed_from_step})
    # cloned: after a ZeRO 1/2 engine the parameters are views into one flat buffer, which save_model refuses
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    ctx.write_metrics(out, {"final": result.final_metrics, "history": result.history, "steps": result.steps})


if __name__ == "__main__":
    stage_main("toy", run, outputs=("out",))
