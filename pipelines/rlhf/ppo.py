"""PPO for a causal LM policy against a proxy reward, with a per-token KL penalty to a frozen reference.

The recipe of Ziegler et al. (2019) / Stiennon et al. (2020) as the brief states it: per-token reward
``-kl_coef * (log pi - log pi_ref)`` with the (normalised) reward-model score added at the last
response token, GAE advantages (gamma 1, lambda 0.95 by default), a clipped policy objective and a
clipped value loss. The value head sits on the policy's last hidden state (shared trunk).
Optimisation goes through the shared training loop's backend (AdamW + schedule + clipping, or
DeepSpeed), generation through HF ``generate`` with the KV cache.

Under several ranks (`torchrun`) every rank draws the same global prompt batch, samples and scores
its own contiguous shard, and updates on it; the backend averages gradients, and each rank's token-mean
loss is weighted by its share of the minibatch's response tokens (`rank_scale`), so each minibatch step
is one step on the token mean over the union of the ranks' minibatches. The reward normaliser, the advantage whitening
and the logged means are computed over the global batch (pipelines/rlhf/batch_stats.py). Sampling is
seeded per rank (rank 0 keeps the one-process seed), so results depend on the number of ranks; one
process is unchanged.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pipelines.rlhf.batch_stats import (global_masked_whiten, global_normalizer, masked_mean, mean_over_ranks,
                                        sum_over_ranks)
from pipelines.rlhf.rewards import RewardNormalizer, ScoreFn
from pipelines.rlhf.rollout import Rollout, forward_logprobs, position_ids, sample_rollout, token_logprobs
from pipelines.training.config import TrainConfig, config_from_block
from pipelines.training.backends import make_backend
from pipelines.training.distributed import broadcast, rank_scale, ranks, shard
from pipelines.training.rng import set_seed


@dataclass
class PPOConfig:
    """One PPO run; ``max_steps`` counts rollout iterations, each followed by ``ppo_epochs`` passes (the optimizer's
    own step count is derived from it, `optimizer_steps`)."""

    max_steps: int = 60
    batch_size: int = 32          # prompts (= samples) per rollout
    minibatch_size: int = 16
    ppo_epochs: int = 2
    max_new_tokens: int = 48
    temperature: float = 1.0
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    whiten_advantages: bool = True
    normalize_reward: bool = True
    eval_every: int = 10          # 0: evaluate only before and after training
    time_budget_s: Optional[float] = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.batch_size < 1 or self.minibatch_size < 1 or self.ppo_epochs < 1:
            raise ValueError("steps >= 0, batch_size, minibatch_size and ppo_epochs >= 1 required")
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of minibatch_size {self.minibatch_size}")
        if self.temperature <= 0:
            raise ValueError("PPO samples from the policy: temperature must be > 0")
        if self.kl_coef < 0 or not 0 <= self.lam <= 1 or self.clip_range <= 0:
            raise ValueError("kl_coef >= 0, 0 <= lam <= 1 and clip_range > 0 required")

    @classmethod
    def from_dict(cls, d: dict) -> "PPOConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown PPO keys: {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    @property
    def optimizer_steps(self) -> int:
        return self.max_steps * self.ppo_epochs * (self.batch_size // self.minibatch_size)


class PolicyWithValue(nn.Module):
    """A causal LM plus a scalar value head on its final hidden state."""

    def __init__(self, causal_lm):
        super().__init__()
        self.lm = causal_lm
        self.value_head = nn.Linear(int(causal_lm.config.hidden_size), 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, query_len: int, temperature: float = 1.0):
        """Response-token log-probs and values ``[B, Lr]`` (value of the state before each token)."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                      output_hidden_states=True)
        logp = token_logprobs(out.logits, input_ids, query_len, temperature)
        hidden = out.hidden_states[-1][:, query_len - 1:-1]
        return logp, self.value_head(hidden.float()).squeeze(-1)


def kl_penalised_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * (log pi - log pi_ref)`` everywhere, plus the score on the last token."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0]), last] += score.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimates and returns ``[B, T]``; the value after the last token is 0."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    steps = rewards.shape[1]
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, advantages + values


def ppo_losses(logp, values, old_logp, old_values, advantages, returns, mask, clip_range, clip_range_value):
    """Clipped surrogate policy loss, clipped value loss, and diagnostics."""
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))
    v_clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    vf = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    with torch.no_grad():
        stats = {"approx_kl": float(masked_mean(0.5 * log_ratio ** 2, mask)),
                 "clipfrac": float(masked_mean(((ratio - 1).abs() > clip_range).float(), mask))}
    return masked_mean(pg, mask), masked_mean(vf, mask), stats


def _slice(rollout: Rollout, idx: torch.Tensor) -> Rollout:
    return Rollout(prompts=[rollout.prompts[i] for i in idx.tolist()], input_ids=rollout.input_ids[idx],
                   attention_mask=rollout.attention_mask[idx], response_mask=rollout.response_mask[idx],
                   query_len=rollout.query_len, texts=[rollout.texts[i] for i in idx.tolist()])


@dataclass
class PPOResult:
    history: list
    steps: int
    elapsed_s: float
    stopped_by_time_budget: bool
    samples: int
    generated_tokens: int
    phase_seconds: dict = field(default_factory=dict)
    normalizer: RewardNormalizer | None = None


EvalFn = Callable[[int], dict]
RolloutHook = Callable[[Sequence[int], Rollout], dict]


class PromptStream:
    """Reproducible epochs over a prompt list: a fresh permutation per pass."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("PPO needs at least one training prompt")
        self.n, self.rng, self.queue = n, np.random.default_rng(seed), []

    def take(self, k: int) -> list[int]:
        while len(self.queue) < k:
            self.queue.extend(self.rng.permutation(self.n).tolist())
        out, self.queue = self.queue[:k], self.queue[k:]
        return out


def _out_of_time(budget_s: Optional[float], start: float, world: int) -> bool:
    """The time budget is spent; rank 0's clock decides, so every rank stops after the same iteration."""
    if budget_s is None:
        return False
    spent = time.perf_counter() - start >= budget_s
    return bool(broadcast(spent)) if world > 1 else spent


def optimizer_config(block: dict, cfg: PPOConfig, where: str = "ppo.optim") -> TrainConfig:
    """The optimizer's TrainConfig from a params `optim` block: its length is the run's optimizer step count."""
    return config_from_block(block, cfg.seed, where, max_steps=max(cfg.optimizer_steps, 1))


def train_ppo(policy: PolicyWithValue, ref_model, tokenizer, prompts: Sequence[str], score_fn: ScoreFn,
              cfg: PPOConfig, optim: TrainConfig, eval_fn: Optional[EvalFn] = None,
              on_rollout: Optional[RolloutHook] = None, progress: bool = True,
              on_log: Optional[Callable[[dict], None]] = None) -> PPOResult:
    """Run ``cfg.max_steps`` PPO iterations in place on ``policy``; ``ref_model`` stays frozen.

    ``on_log(row)`` (main rank only) gets each iteration's row as soon as it is made (a stage streams
    it to MLflow while PPO runs).

    ``eval_fn(step)`` runs before training, every ``cfg.eval_every`` iterations and at the end; its
    rows join the history (the over-optimisation curve). ``on_rollout(prompt_indices, rollout)``
    may add per-iteration metrics (for example the gold reward of the training samples).
    """
    set_seed(cfg.seed)
    ref_model.eval().requires_grad_(False)
    if optim.max_steps != max(cfg.optimizer_steps, 1) or optim.seed != cfg.seed:
        raise ValueError(f"optimizer config has max_steps {optim.max_steps} and seed {optim.seed}; this PPO run "
                         f"takes {max(cfg.optimizer_steps, 1)} steps with seed {cfg.seed} (build it with optimizer_config)")
    here = ranks()
    if cfg.batch_size % here.world or cfg.minibatch_size % here.world:
        raise ValueError(f"PPO batch_size {cfg.batch_size} and minibatch_size {cfg.minibatch_size} must be "
                         f"multiples of the number of processes ({here.world})")
    local_batch, local_minibatch = cfg.batch_size // here.world, cfg.minibatch_size // here.world
    backend = make_backend(policy, optim)
    stream = PromptStream(len(prompts), cfg.seed)
    phases = {"generate": 0.0, "score": 0.0, "reference": 0.0, "update": 0.0, "eval": 0.0}
    history: list = []
    normalizer: RewardNormalizer | None = None
    samples = tokens = 0
    start = time.perf_counter()

    evaluated: set = set()

    def evaluate(step: int) -> None:
        if eval_fn is None or step in evaluated:
            return
        evaluated.add(step)
        t = time.perf_counter()
        row = {"step": step, **eval_fn(step)}
        phases["eval"] += time.perf_counter() - t
        history.append(row)

    evaluate(0)
    stopped = False
    done = 0
    bar = tqdm(total=cfg.max_steps, disable=not progress, file=sys.stderr, desc="ppo", dynamic_ncols=True)
    for it in range(cfg.max_steps):
        if _out_of_time(cfg.time_budget_s, start, here.world):
            stopped = True
            break
        idx = shard(stream.take(cfg.batch_size))
        batch_prompts = [prompts[i] for i in idx]
        t0 = time.perf_counter()
        rollout = sample_rollout(policy.lm, tokenizer, batch_prompts, cfg.max_new_tokens, cfg.temperature,
                                 seed=cfg.seed * 1_000_003 + it + here.rank * 7_654_321)
        t1 = time.perf_counter()
        raw = score_fn(batch_prompts, rollout.texts).detach().float()
        if normalizer is None:
            normalizer = global_normalizer(raw, cfg.normalize_reward)
        score = normalizer(raw)
        t2 = time.perf_counter()
        mask = rollout.response_mask
        with torch.no_grad():
            old_logp, old_values = policy(rollout.input_ids, rollout.attention_mask, rollout.query_len, cfg.temperature)
            old_logp, old_values = old_logp * mask, old_values * mask
            ref_logp = forward_logprobs(ref_model, rollout, cfg.temperature)
            rewards = kl_penalised_rewards(score, old_logp, ref_logp, mask, cfg.kl_coef)
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                advantages = global_masked_whiten(advantages, mask)
        t3 = time.perf_counter()
        sums = {"pg_loss": 0.0, "vf_loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
        n_updates = 0
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + it)
        policy.train()
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(local_batch, generator=gen)
            for mb in perm.split(local_minibatch):
                part = _slice(rollout, mb)
                logp, values = backend.module(part.input_ids, part.attention_mask, part.query_len, cfg.temperature)
                pg, vf, stats = ppo_losses(logp, values, old_logp[mb], old_values[mb], advantages[mb], returns[mb],
                                           part.response_mask, cfg.clip_range, cfg.clip_range_value)
                loss = pg + cfg.vf_coef * vf
                if here.world > 1:  # token means over the union of the ranks' minibatches, not a mean of means
                    loss = loss * rank_scale(float(part.response_mask.sum()))
                backend.micro_step(loss, True)
                for k, v in (("pg_loss", float(pg.detach())), ("vf_loss", float(vf.detach())), *stats.items()):
                    sums[k] += v
                n_updates += 1
        policy.eval()
        t4 = time.perf_counter()
        for name, dt in (("generate", t1 - t0), ("score", t2 - t1), ("reference", t3 - t2), ("update", t4 - t3)):
            phases[name] += dt
        samples += cfg.batch_size
        tokens += sum_over_ranks(int(mask.sum()))
        seq_kl = ((old_logp - ref_logp) * mask).sum(1)
        row = {"step": it + 1, "score_raw": float(raw.mean()), "score": float(score.mean()),
               "kl": float(seq_kl.mean()), "return": float(rewards.sum(1).mean()),
               "response_len": float(mask.sum(1).mean()), "lr": backend.current_lr(),
               **{k: v / max(n_updates, 1) for k, v in sums.items()}}
        if on_rollout is not None:
            row.update(on_rollout(idx, rollout))
        row = mean_over_ranks(row, [k for k in row if k not in ("step", "lr")])
        history.append(row)
        if on_log is not None and here.is_main:
            on_log({**row, "loss": row["pg_loss"]})
        done = it + 1
        bar.update(1)
        bar.set_postfix(score=f"{row['score_raw']:.3f}", kl=f"{row['kl']:.2f}")
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.max_steps:
            evaluate(done)
    bar.close()
    evaluate(done)
    return PPOResult(history=history, steps=done, elapsed_s=time.perf_counter() - start, stopped_by_time_budget=stopped,
                     samples=samples, generated_tokens=tokens, phase_seconds={k: round(v, 3) for k, v in phases.items()},
                     normalizer=normalizer)
