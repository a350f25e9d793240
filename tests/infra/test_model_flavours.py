"""Registered models load and serve the MLflow way: a flavour, a signature and an input example each.

Tiny models of every family are saved with the project's own code, published through the same
paths the pipeline uses (a stage's `log_stage_model`, the task's `reconcile_stage`) and loaded back
with `mlflow.pyfunc.load_model("models:/NAME@champion")`.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest
import yaml

from alignflow import registry
from alignflow.runtime import flavours, gates
from alignflow.runtime.errors import AlignflowError
from alignflow.runtime.stage_graph import StageInfo, load_stage_graph
from tests.infra import flavour_models
from tests.project import REPO

_IDS = itertools.count(1)
SMOKE = gates.Provenance("smoke", gates.eval_set("data/eval.jsonl", "abc", 24))


def _stage(name: str, flavour: str) -> StageInfo:
    register = {"name": name, "artifact": "model", "metrics": f"models/{name}/metrics.json", "flavour": flavour}
    return StageInfo(name=f"stage_{name}", cmd="python -m stages.x", deps=(), outs=(f"models/{name}",), params=(),
                     meta={"register": register})


def _commit(root, info: StageInfo, build) -> None:
    """What DVC leaves after committing the stage: the model folder, metrics.json with a passed gate, dvc.lock."""
    out = root / info.outs[0]
    build(out / "model")
    (out / "metrics.json").write_text(json.dumps({"gate": gates.interval_gate("score", 0.7, 0.6, 0.5, SMOKE, "ok")}))
    lock = root / "dvc.lock"
    stages = yaml.safe_load(lock.read_text())["stages"] if lock.is_file() else {}
    stages[info.name] = {"cmd": info.cmd, "outs": [{"path": info.outs[0], "md5": f"{info.name}.dir", "size": 1, "nfiles": 1}]}
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def _dvc_project(root, stages: dict) -> None:
    """A DVC project folder declaring `stages` (what load_stage_graph reads)."""
    (root / ".dvc").mkdir(exist_ok=True)
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))


def _example(name: str):
    """The input example the model was logged with, as MLflow stored it next to the registered model."""
    import mlflow
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(artifact_uri=registry.resolve(f"{name}@champion").source)
    import pandas as pd

    example = Model.load(local).load_input_example(local)
    return pd.DataFrame(example) if example and isinstance(example[0], dict) else example


@pytest.fixture(scope="module")
def published(module_store, tmp_path_factory):
    """Every family published through the task's reconcile path into one store; name -> (flavour, model folder)."""
    import os

    import mlflow

    root = tmp_path_factory.mktemp("workspace")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "ALIGNFLOW_EXPERIMENT")}
    os.environ["MLFLOW_TRACKING_URI"], os.environ["ALIGNFLOW_EXPERIMENT"] = mlflow.get_tracking_uri(), "flavours"
    names = {}
    try:
        for name, (flavour, build) in flavour_models.MODELS.items():
            info = _stage(name, flavour)
            _commit(root, info, build)
            assert registry.reconcile_stage(root, info, None) is not None
            names[name] = (flavour, root / info.outs[0] / "model")
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name", list(flavour_models.MODELS))
def test_every_family_loads_from_the_registry_and_predicts_its_example(published, name):
    """`pyfunc.load_model("models:/NAME@champion")` gives a model whose prediction on its logged example is sensible.

    Fails if a family is logged as a bare folder (no MLmodel), its signature rejects its own example,
    its code is not bundled (the pyfunc cannot import pipelines.serving), or its outputs are wrong.
    """
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    example = _example(name)
    out = model.predict(example)
    flavour = published[name][0]
    if flavour in flavours.TRANSFORMERS_FLAVOURS:
        assert len(out) == len(example) and all(isinstance(t, str) for t in out)
        return
    assert list(out.columns) == [c.name for c in __import__("pipelines.serving").serving.family(flavour).outputs]
    assert len(out) == len(example)
    if flavour in ("gram", "bt"):
        assert all(0 <= p <= 1 for p in out["p_a_better"])
        swapped = example.rename(columns={"response_a": "response_b", "response_b": "response_a"})
        back = model.predict(swapped)
        assert all(math.isclose(p + q, 1.0, abs_tol=1e-5) for p, q in zip(out["p_a_better"], back["p_a_better"]))
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(out["reward_a"], back["reward_b"]))
    elif flavour == "lrhp":
        assert all(0 <= p <= 1 for p in out["p_a_better"])
        assert all(len(v) == 8 and math.isclose(sum(x * x for x in v), 1.0, abs_tol=1e-4) for v in out["vector"])
    elif flavour == "visual":
        assert all(math.isfinite(r) for r in out["reward"]) and out["reward"][0] != out["reward"][1]  # image used
    else:
        assert all(isinstance(t, str) for t in out.iloc[:, 0])


@pytest.mark.slow
def test_pyfunc_agrees_with_the_projects_own_loader(published):
    """BT rewards through MLflow equal `BTRewardModel.load(...).rewards` on the registry's folder.

    Fails if the pyfunc loads another folder, swaps responses, or `registry get` points elsewhere.
    """
    import mlflow

    from pipelines.models.reward.bt import BTRewardModel

    example = _example("reward-bt")
    out = mlflow.pyfunc.load_model("models:/reward-bt@champion").predict(example)
    info = registry.model_info("reward-bt@champion")
    own = BTRewardModel.load(info["folder"]).rewards(list(example["prompt"]), list(example["response_a"]))
    assert [round(x, 5) for x in out["reward_a"]] == [round(float(x), 5) for x in own]


@pytest.mark.slow
def test_registry_get_names_the_right_loading_call_per_family(published):
    """`registry get` (model_info) shows the family's own loader, never AutoModelForCausalLM for a non-LM.

    Fails if the README's old advice (AutoModelForCausalLM for everything) comes back for reward,
    LiSA or speech models, or if the folder it prints is not the one the project's loader reads.
    """
    expected = {"reward-gram": "GenerativeRewardModel.load", "reward-bt": "BTRewardModel.load",
                "policy-lisa": "load_lisa_model", "st-nast": "speech.models import load_model",
                "reward-visual": "load_visual_rm", "preference-repr": "PairEncoder.load", "policy-sft": "AutoModelForCausalLM", "base-lm": "AutoModelForCausalLM"}
    for name, call in expected.items():
        info = registry.model_info(f"{name}@champion")
        assert call in info["project"] and info["folder"] in info["project"].replace("/components/tokenizer", "")
        assert ("AutoModelForCausalLM" in info["project"]) == (name in ("policy-sft", "base-lm"))
        assert f"models:/{name}@champion" in info["mlflow"]
        assert (flavour_models.MODELS[name][0] in flavours.TRANSFORMERS_FLAVOURS) == (info["flavour"] == "transformers")


def test_every_published_stage_declares_a_known_flavour():
    """Each stage of dvc.yaml with `meta.register` (templated variants included) names a flavour we can log.

    Fails when a new registered model family is added without a flavour (it would be registered as
    a bare folder that `mlflow.pyfunc.load_model` cannot load) or with a misspelt one.
    """
    graph = load_stage_graph(REPO)
    declared = {name: (s.meta or {}).get("register", {}).get("flavour") for name, s in graph.stages.items()
                if (s.meta or {}).get("register")}
    assert declared and all(f in flavours.known() for f in declared.values()), declared
    assert flavours.stage_flavour(REPO, "gram_finetune@gram") == "gram"  # what a stage process reads
    assert flavours.stage_flavour(REPO, "gram_finetune@gram_nopre") is None  # a variant that publishes nothing


def test_an_unknown_flavour_fails_naming_the_stage(tmp_path, tracking):
    """A misspelt flavour is one clear error naming dvc.yaml's stage, before anything is logged."""
    _dvc_project(tmp_path, {"stage_x": {"cmd": "python -m stages.x", "outs": ["models/x"], "meta": {"register": {
        "name": "m", "artifact": "model", "metrics": "models/x/metrics.json", "flavour": "pickle"}}}})
    with pytest.raises(AlignflowError, match="stage_x.*flavour 'pickle'"):
        flavours.stage_flavour(tmp_path, "stage_x")


def test_a_stage_logs_its_published_model_as_an_mlflow_model(tmp_path, tracking):
    """`log_stage_model` in a stage run logs an MLflow model (MLmodel, signature, example) that `publish` registers.

    Fails if the stage side still logs a bare folder, or logs it under another artifact path than
    the one `meta.register.artifact` names (the registered version would not load).
    """
    import mlflow

    from alignflow.runtime.stage import StageContext
    from pipelines.models.reward.bt import BTRewardModel

    name = f"reward-bt-{next(_IDS)}"
    info = _stage(name, "bt")
    _dvc_project(tmp_path, {info.name: {"cmd": info.cmd, "outs": list(info.outs), "meta": info.meta}})
    staged = flavour_models.bt(tmp_path / "staging" / "model")
    _commit(tmp_path, info, lambda out: out.mkdir(parents=True))
    with mlflow.start_run() as run:
        ctx = StageContext(info.name, tmp_path, {}, run)
        flavours.log_stage_model(ctx, staged, tmp_path / info.outs[0] / "model")
    assert ctx.machine_facts["model_logging_seconds"] >= 0 and not ctx._artifacts  # not logged again as a bare folder
    registry.publish(tmp_path, info.registry, run.info.run_id, info.name, {})
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert model.metadata.signature.inputs.input_names() == ["prompt", "response_a", "response_b"]
    out = model.predict([{"prompt": "q", "response_a": "a", "response_b": "b"}])
    expected = BTRewardModel.load(str(staged)).rewards(["q"], ["a"])
    assert round(float(out["reward_a"][0]), 5) == round(float(expected[0]), 5)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_real_http_request(published, tmp_path):
    """`mlflow models serve -m models:/reward-bt@champion` on 127.0.0.1 answers /invocations as the pyfunc does.

    Fails if the logged model cannot be served (requirements, code or artifacts missing from the
    model, a signature the scoring server rejects) or serves other numbers than a local load.
    """
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import mlflow

    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),  # the venv's uvicorn, as when it is active
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/reward-bt@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        rows = [{"prompt": "Name a fruit that is yellow.", "response_a": "A banana.", "response_b": "The sky."}]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"dataframe_records": rows}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            served = json.loads(resp.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    local = mlflow.pyfunc.load_model("models:/reward-bt@champion").predict(rows)
    assert len(served) == 1 and set(served[0]) == {"p_a_better", "reward_a", "reward_b"}
    assert all(math.isclose(served[0][k], float(local[k][0]), abs_tol=1e-6) for k in served[0])

