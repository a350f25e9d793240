"""A tiny resumable training stage, run as a real process by the kill-and-resume tests.

It uses what every training stage uses: `stage_main`, a staged output taken before training,
`ctx.checkpoint_dir` and the shared loop (dropout, shuffled batches, a log window that does not
line up with the checkpoints, an eval every 5 steps). `TOY_STEP_SLEEP` slows each step so a test
can kill it mid-training.
"""
from __future__ import annotations

import os
import shutil
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_model

from alignflow.runtime.stage import StageContext, stage_main
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from pipelines.training.rng import set_seed


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(8, 16)
        self.drop = torch.nn.Dropout(0.2)
        self.out = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.inp(x))))


def run(ctx: StageContext) -> None:
    torch.set_num_threads(1)
    p = ctx.block("toy")
    set_seed(ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(48, 8, generator=gen)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(48, 1, generator=gen)
    data = list(zip(x, y))
    model = TinyNet()
    out = ctx.output("out")  # staged before training: a kill leaves `.toy.tmp-PID` behind
    ckpt = ctx.checkpoint_dir("toy")
    pause = float(os.environ.get("TOY_STEP_SLEEP", "0"))

    def loss_fn(m, batch):
        time.sleep(pause)
        xb, yb = batch
        loss = F.mse_loss(m(xb), yb)
        return loss, {"mse": float(loss.detach())}

    def evaluate(m):
        return {"mse": float(F.mse_loss(m(x), y))}

    cfg = TrainConfig.from_dict({**p["train"], "seed": ctx.seed})
    result = train(model, data, loss_fn, cfg, eval_fn=evaluate, checkpoint_dir=str(ckpt), progress=False)
    ctx.write_machine_facts({"resumed_from_step": result.resumed_from_step, "train_seconds": result.elapsed_s})
    save_model(model, str(out / "model.safetensors"))
    ctx.write_metrics(out, {"final": result.final_metrics, "history": result.history, "steps": result.steps,
                            "stopped_by_time_budget": result.stopped_by_time_budget})
    shutil.rmtree(ckpt, ignore_errors=True)


if __name__ == "__main__":
    stage_main("toy", run, outputs=("out",))
