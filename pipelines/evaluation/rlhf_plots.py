"""The over-optimisation figure (Gao et al. 2022): gold and proxy reward against sqrt(KL to the SFT policy)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines.evaluation.plots import save_figure  # noqa: E402


def plot_overoptimisation(series: Mapping[str, Sequence[Mapping]], path: Path, sft_gold: float | None = None) -> None:
    """One line per method, points joined in the order given (training order for PPO, n for
    best-of-n); each point has ``sqrt_kl``, ``gold`` and ``proxy_gain`` (proxy minus its value at KL 0,
    in standard deviations of the initial policy's proxy scores)."""
    fig, (ax_gold, ax_proxy) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for (name, points), colour in zip(series.items(), plt.cm.tab10.colors):
        pts = list(points)
        xs = [r["sqrt_kl"] for r in pts]
        style = "o-" if len(pts) > 1 else "s"
        ax_gold.plot(xs, [r["gold"] for r in pts], style, color=colour, label=name, markersize=4)
        if all(r.get("proxy_gain") is not None for r in pts):
            ax_proxy.plot(xs, [r["proxy_gain"] for r in pts], style, color=colour, label=name, markersize=4)
    if sft_gold is not None:
        ax_gold.axhline(sft_gold, color="grey", linestyle="--", linewidth=1, label="SFT")
    ax_gold.set(xlabel="sqrt(KL(policy || SFT)) [nats^0.5]", ylabel="gold reward (held-out prompts)",
                title="Gold reward")
    ax_proxy.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax_proxy.set(xlabel="sqrt(KL(policy || SFT)) [nats^0.5]", ylabel="proxy reward gain [SFT std]",
                 title="Proxy reward (what the policy optimises)")
    ax_gold.legend(fontsize=7)
    ax_proxy.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
