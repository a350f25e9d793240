"""RLHF: rollouts, PPO with a KL-penalised reward, DPO, and best-of-n over reward models."""
