"""The stage graph comes from dvc.yaml through DVC, and drives order, upstream and downstream."""
from __future__ import annotations

import pytest

from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.stage_graph import load_stage_graph
from tests.project import REPO


@pytest.fixture(scope="module")
def graph():
    return load_stage_graph(REPO)


def test_execution_order_respects_dependencies(graph):
    order = graph.order()
    assert order.index("world") < order.index("tokenizer") < order.index("base_lm") < order.index("sft")
    assert order.index("world") < order.index("prefs")


def test_targets_pull_in_upstream_only(graph):
    assert graph.order(["sft"]) == ["external_inputs", "world", "tokenizer", "base_lm", "sft"]
    assert graph.order(["world"]) == ["world"]
    with pytest.raises(AlignflowError, match="unknown stage"):
        graph.order(["nope"])


def test_producers_consumers_and_downstream(graph):
    assert graph.producer_of("data/world/sft_train.jsonl").name == "world"
    assert graph.producer_of("models/sft/model").name == "sft"
    assert graph.producer_of("README.md") is None
    assert "sft" in graph.consumers_of("data/world/sft_train.jsonl")
    assert set(graph.downstream("sft")) == {"sft_samples", "rm_compare", "ppo@ppo_gram", "ppo@ppo_bt", "dpo", "best_of_n",
                                            "rlhf_compare", "lisa", "dpo_margin"}
    assert {"sft", "gram_pretrain", "gram_finetune@gram", "bt_rm", "gram_adapt"} <= set(graph.downstream("base_lm"))
    speech = {"speech_corpus", "speech_vocab", "speech_features", "st_train@st_nast", "st_train@st_ar", "st_train@st_nast_nopae",
              "st_train@st_nast_nocross", "st_train@st_nast_curriculum", "st_compare"}
    assert speech <= set(graph.stages)  # the speech branch is independent of the alignment branch
    assert set(graph.downstream("world")) == set(graph.stages) - {"world", "external_inputs"} - speech
    # files named by params are fingerprinted upstream of exactly the stages that read them
    assert set(graph.direct_consumers("external_inputs")) == {"prefs", "tokenizer", "base_lm", "rm_compare", "lrhp",
                                                             "speech_corpus", "visual_world", "visual_policy"}
    assert set(graph.downstream("speech_corpus")) == speech - {"speech_corpus"}
    visual = {"visual_world", "visual_policy", "visual_select", "rovrm@rovrm", "rovrm@rovrm_visual_only", "rovrm_ablations",
              "rovrm_compare"}
    # the visual branch reads the text world's preference pairs (its text pool) and nothing else upstream
    assert set(graph.downstream("visual_world")) == visual - {"visual_world"}
    assert visual <= set(graph.downstream("prefs")) and not visual & set(graph.downstream("base_lm"))
    assert set(graph.downstream("visual_select")) == {"rovrm@rovrm", "rovrm@rovrm_visual_only", "rovrm_ablations", "rovrm_compare"}
    assert graph.order(["gram_finetune@gram"]) == ["external_inputs", "world", "prefs", "tokenizer", "base_lm", "bt_rm", "gram_pretrain", "gram_finetune@gram"]


def test_registered_stages_declare_their_model(graph):
    for name in ("base_lm", "sft", "gram_finetune@gram", "bt_rm"):
        reg = graph.stages[name].registry
        assert reg["metrics"].startswith(graph.stages[name].outs[0])


def test_default_targets_leave_out_the_ablation_stages_only(graph):
    """Fails if `run_ablations: false` dropped a main stage, kept an ablation, or dropped an ablation's upstream."""
    ablations = {"gram_finetune@gram_nopre", "gram_finetune@gram_eps0", "gram_ablations", "dpo_margin", "st_train@st_nast_nopae",
                 "st_train@st_nast_nocross", "st_train@st_nast_curriculum", "rovrm_ablations"}
    assert {n for n, s in graph.stages.items() if s.meta.get("ablation") is True} == ablations
    assert graph.default_targets(True) is None  # the whole graph
    order = graph.order(graph.default_targets(False))
    assert set(order) == set(graph.stages) - ablations
    # no main stage reads an ablation's output, so leaving them out leaves every comparison runnable
    assert not any(set(graph.downstream(a)) - ablations for a in ablations)
