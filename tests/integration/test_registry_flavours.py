"""After the smoke DAG, every registered model loads through `mlflow.pyfunc.load_model` and predicts.

The done-when of issue 15 part 1, on the real pipeline: the models the stages logged (with the
flavour their dvc.yaml `meta.register` declares) answer the input example they were logged with.
"""
from __future__ import annotations

import math

import pytest

from alignflow.runtime.stage_graph import load_stage_graph
from pipelines import serving
from tests.project import REPO

pytestmark = pytest.mark.integration
GRAPH = load_stage_graph(REPO)
PUBLISHED = {s: GRAPH.stages[s].registry for s in GRAPH.order() if GRAPH.stages[s].registry}


def test_every_registered_model_loads_as_pyfunc_and_predicts_its_example(smoke_project):
    """`models:/NAME@candidate` of each published stage loads and gives a sensible answer to its example.

    Fails if a stage logs its model as a bare folder, a family cannot load the folder the stage
    saved, or `registry get` prints a folder the project's own loader cannot read.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import Model

    from alignflow import registry

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{smoke_project.root}/mlflow/mlflow.db")
    try:
        assert len(PUBLISHED) >= 12
        for stage, register in PUBLISHED.items():
            ref = f"{register['name']}@candidate"
            local = mlflow.artifacts.download_artifacts(artifact_uri=registry.resolve(ref).source)
            example = Model.load(local).load_input_example(local)
            out = mlflow.pyfunc.load_model(f"models:/{ref}").predict(
                pd.DataFrame(example) if isinstance(example[0], dict) else example)
            assert len(out) == len(example), stage
            flavour = register["flavour"]
            if flavour not in ("causal-lm", "chat-lm"):  # a pyfunc family: its declared columns, finite numbers
                outputs = serving.family(flavour).outputs
                assert list(out.columns) == [c.name for c in outputs], stage
                assert all(math.isfinite(v) for c in outputs if c.type == "double" for v in out[c.name]), stage
            if flavour in ("gram", "bt"):
                assert all(0 <= p <= 1 for p in out["p_a_better"]), stage
            elif flavour == "speech":
                assert all(isinstance(t, str) for t in out["translation"]), stage
            elif flavour == "lisa":
                assert all(isinstance(t, str) for t in out["response"]), stage
            elif flavour in ("causal-lm", "chat-lm"):
                assert all(isinstance(t, str) for t in out), stage
            assert registry.model_info(ref)["flavour"] in ("transformers", f"pyfunc:{flavour}"), stage
    finally:
        mlflow.set_tracking_uri(previous)
