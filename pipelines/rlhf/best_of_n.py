"""Best-of-n as a policy: the SFT samples pool plus a reward model's pick at decode time.

For each chooser and n, the response the reward model picks among the first n samples of the pool,
summarised like every other policy (gold reward and its paired gain over SFT, win rate, proxies) with
the analytic KL(best-of-n || SFT) = log n - (n - 1)/n. The picks are kept: the reward-model
comparison reads them instead of choosing again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from pipelines.evaluation.policy_eval import summarize_policy
from pipelines.evaluation.reward_metrics import best_of_n_kl

CURVE_KEYS = ("gold", "gold_ci95_low", "gold_ci95_high", "proxy")


@dataclass
class BestOfN:
    metrics: dict          # "<chooser>/n<n>/<metric>" plus n_prompts, pool_k
    curve: list[dict]      # one row per n: n, kl, sqrt_kl, "<chooser>_<key>" for CURVE_KEYS
    columns: list[str]     # the curve's CSV columns
    picks: list[dict]      # {"reward_model", "n", "id", "pick"} per chooser, n and prompt


def pool_size_check(pool: Sequence[Mapping], ns: Sequence[int]) -> tuple[list[int], int]:
    """(sorted distinct ns, k = smallest number of samples per prompt); ValueError if an n is outside [1, k]."""
    ns_sorted = sorted({int(n) for n in ns})
    k = min(len(r["samples"]) for r in pool)
    if not ns_sorted or ns_sorted[0] < 1 or ns_sorted[-1] > k:
        raise ValueError(f"best_of_n.n must lie in [1, {k}] (sft_samples.k), got {list(ns)}")
    return ns_sorted, k


def best_of_n_policy(pool: Sequence[Mapping], ns: Sequence[int], choosers: Mapping, proxies: Mapping,
                     n_bootstrap: int, seed: int) -> BestOfN:
    """Pick with each chooser (`.choose_best`) at every n, score the picks with every proxy (`.score`).

    Every chooser must also be among `proxies` (its own proxy reward is reported as `proxy`).
    """
    ns_sorted, k = pool_size_check(pool, ns)
    missing = [name for name in choosers if name not in proxies]
    if missing:
        raise ValueError(f"chooser(s) {', '.join(missing)} have no proxy scorer")
    prompts = [r["prompt"] for r in pool]
    sft_gold = [list(r["gold"]) for r in pool]
    metrics: dict = {"n_prompts": len(pool), "pool_k": k}
    curve: dict[int, dict] = {n: {"n": n, "kl": round(best_of_n_kl(n), 4)} for n in ns_sorted}
    picks_out = []
    for rm, chooser in choosers.items():
        for n in ns_sorted:
            picks = [0] * len(pool) if n == 1 else chooser.choose_best(prompts, [r["samples"][:n] for r in pool])
            rows = [{"prompt_index": i, "family": r["family"], "response": r["samples"][j], "gold": r["gold"][j]}
                    for i, (r, j) in enumerate(zip(pool, picks))]
            scores = {name: p.score(prompts, [row["response"] for row in rows]).tolist() for name, p in proxies.items()}
            m = summarize_policy(rows, sft_gold, n_bootstrap=n_bootstrap, seed=seed, kl=best_of_n_kl(n), proxies=scores)
            m["proxy"] = m[f"proxy/{rm}"]
            metrics.update({f"{rm}/n{n}/{key}": v for key, v in m.items()})
            curve[n].update({"sqrt_kl": m["sqrt_kl"], **{f"{rm}_{key}": m[key] for key in CURVE_KEYS}})
            picks_out += [{"reward_model": rm, "n": n, "id": pool[i]["id"], "pick": int(j)} for i, j in enumerate(picks)]
    columns = ["n", "kl", "sqrt_kl"] + [f"{rm}_{key}" for rm in choosers for key in CURVE_KEYS]
    return BestOfN(metrics, list(curve.values()), columns, picks_out)


def picks_by_chooser(picks: Sequence[Mapping], pool_ids: Sequence[str]) -> dict[str, dict[int, list[int]]]:
    """chooser -> n -> pick per pool prompt (in `pool_ids` order), from the rows `best_of_n_policy` keeps."""
    out: dict[str, dict[int, dict[str, int]]] = {}
    for row in picks:
        out.setdefault(row["reward_model"], {}).setdefault(int(row["n"]), {})[row["id"]] = int(row["pick"])
    result: dict[str, dict[int, list[int]]] = {}
    for rm, by_n in out.items():
        result[rm] = {}
        for n, by_id in sorted(by_n.items()):
            missing = [i for i in pool_ids if i not in by_id]
            if missing:
                raise ValueError(f"best-of-n picks of {rm!r} at n={n} lack pool prompt {missing[0]!r}")
            result[rm][n] = [by_id[i] for i in pool_ids]
    return result
