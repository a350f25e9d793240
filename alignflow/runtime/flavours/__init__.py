"""Registered models as MLflow models: a flavour, a signature and an input example for each.

A stage's `meta.register.flavour` in dvc.yaml names how its model folder becomes an MLflow model:

- `causal-lm` (the base LM) and `chat-lm` (the SFT, PPO and DPO policies): `mlflow.transformers`,
  a text-generation pipeline; `chat-lm` adds the project's chat template as the prompt template.
- any serving family of `pipelines/serving` (`gram`, `bt`, `lisa`, `speech`, `visual`): an
  `mlflow.pyfunc` model logged as code (`alignflow/mlflow_model.py`), the saved folder as its
  `model` artifact and `pipelines/` as its code, so it loads anywhere the requirements are installed.

`pipelines` code (the serving families, the LM loaders) and the pyfunc file are reached by name and
by path, never by a static import:
they shape the MLflow model, not a stage's DVC outputs, so they must not become code deps of every
stage (`alignflow deps`), where a change to the speech predictor would rerun the whole DAG.

Every one loads with `mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and serves with
`mlflow models serve`. The requirements are pinned to this environment's versions and written
explicitly (no inference), so saving takes a second or two and needs no network. Without a
flavour the folder is logged as it is (the registry then holds a bare folder).
"""
from __future__ import annotations

import importlib
import json
import shutil
import tempfile
import threading
from importlib import metadata
from pathlib import Path

from alignflow.runtime.errors import AlignflowError

TRANSFORMERS_FLAVOURS = ("causal-lm", "chat-lm")
BASE_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas")
_ENTRY = Path(__file__).resolve().parents[2] / "mlflow_model.py"  # loaded by MLflow by path
_SAVE_LOCK = threading.Lock()  # `set_model` in models-from-code sets a process-wide global
EXAMPLE_PROMPTS = ["Name a fruit that is yellow.", "How many legs does a cat have?"]


def _serving():
    """`pipelines.serving`, imported by name (see the module docstring for why not statically)."""
    return importlib.import_module("pipelines.serving")


def known() -> list[str]:
    return sorted([*TRANSFORMERS_FLAVOURS, *_serving().names()])


def check(flavour: str, where: str) -> None:
    if flavour not in known():
        raise AlignflowError(f"{where}: unknown model flavour {flavour!r}; known: {', '.join(known())}")


def requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """`name==version` of each distribution the model needs, as installed here (no inference, no network)."""
    return [f"{name}=={metadata.version(name)}" for name in (*BASE_REQUIREMENTS, *extra)]


def save(folder: Path, flavour: str, dest: Path) -> None:
    """Write the MLflow model of the project-format model saved in `folder` into the empty `dest`."""
    check(flavour, str(folder))
    if flavour in TRANSFORMERS_FLAVOURS:
        _save_transformers(Path(folder), flavour, Path(dest))
    else:
        _save_pyfunc(Path(folder), flavour, Path(dest))


def _save_transformers(folder: Path, flavour: str, dest: Path) -> None:
    import mlflow.transformers
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    format_prompt = importlib.import_module("pipelines.data.template").format_prompt  # by name: module docstring
    load_causal_lm = importlib.import_module("pipelines.models.causal_lm").load_causal_lm
    load_tokenizer = importlib.import_module("pipelines.models.tokenizer").load_tokenizer
    signature = ModelSignature(Schema([ColSpec("string")]), Schema([ColSpec("string")]),
                               ParamSchema([ParamSpec("max_new_tokens", "long", 32),
                                            ParamSpec("do_sample", "boolean", False)]))
    chat = flavour == "chat-lm"
    model, tokenizer = load_causal_lm(str(folder)), load_tokenizer(str(folder))
    mlflow.transformers.save_model(
        {"model": model, "tokenizer": tokenizer}, str(dest), task="text-generation", signature=signature,
        input_example=EXAMPLE_PROMPTS if chat else ["the"], pip_requirements=requirements(),
        prompt_template=tokenizer.bos_token + format_prompt("{prompt}") if chat else None,
        model_config={"max_new_tokens": 32, "do_sample": False})


def _schema(columns):
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    types = {"string": DataType.string, "double": DataType.double, "long": DataType.long,
             "double_array": Array(DataType.double)}
    return Schema([ColSpec(types[c.type], c.name, required=c.required) for c in columns])


def _param_schema(params: dict):
    from mlflow.types.schema import ParamSchema, ParamSpec

    kinds = {bool: "boolean", int: "long", float: "double", str: "string"}
    return ParamSchema([ParamSpec(k, kinds[type(v)], v) for k, v in params.items()])


def _save_pyfunc(folder: Path, name: str, dest: Path) -> None:
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    fam = _serving().family(name)
    signature = ModelSignature(_schema(fam.inputs), _schema(fam.outputs), _param_schema(fam.params))
    with tempfile.TemporaryDirectory(prefix="alignflow-code-") as tmp:
        code = Path(tmp) / "pipelines"
        shutil.copytree(Path(_serving().__file__).parents[1], code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with _SAVE_LOCK:
            mlflow.pyfunc.save_model(str(dest), python_model=str(_ENTRY), artifacts={"model": str(folder)},
                                     model_config={"family": name}, code_paths=[str(code)], signature=signature,
                                     input_example=fam.example(folder), pip_requirements=requirements(fam.requirements))


def log(folder: Path, flavour: str, artifact_path: str = "model", run_id: str | None = None) -> None:
    """Save the MLflow model of `folder` and log it as `artifact_path` of the active run (or `run_id`)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="alignflow-mlflow-model-") as tmp:
        dest = Path(tmp) / "model"
        save(folder, flavour, dest)
        if run_id is None:
            mlflow.log_artifacts(str(dest), artifact_path)
        else:
            mlflow.MlflowClient().log_artifacts(run_id, str(dest), artifact_path)


def describe(local_dir: Path) -> dict:
    """What a downloaded registry model is and how to load it: flavour, the project-format folder, calls.

    A folder without an MLmodel file is a bare project folder (a version published before flavours).
    """
    local_dir = Path(local_dir)
    mlmodel = local_dir / "MLmodel"
    if not mlmodel.is_file():
        return {"flavour": None, "folder": str(local_dir), "mlflow": None, "project": None}
    import yaml

    flavors = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors", {})
    if "transformers" in flavors:
        folder = local_dir / flavors["transformers"].get("model_binary", "model")
        tokenizer = local_dir / "components" / "tokenizer"
        return {"flavour": "transformers", "folder": str(folder),
                "mlflow": "mlflow.transformers.load_model('{uri}')  # a text-generation pipeline; "
                          "or mlflow.pyfunc.load_model('{uri}').predict(['question'])",
                "project": f"AutoModelForCausalLM.from_pretrained('{folder}'); "
                           f"AutoTokenizer.from_pretrained('{tokenizer}')"}
    pyfunc = flavors.get("python_function", {})
    name = (pyfunc.get("config") or {}).get("family") or _model_config(local_dir, pyfunc).get("family")
    artifact = (pyfunc.get("artifacts") or {}).get("model", {}).get("path")
    if not name or not artifact:
        raise AlignflowError(f"{mlmodel}: not an alignflow model (no serving family or `model` artifact)")
    family = _serving().family(name)
    folder = local_dir / artifact
    columns = ", ".join(c.name for c in family.inputs)
    return {"flavour": f"pyfunc:{name}", "folder": str(folder),
            "mlflow": f"mlflow.pyfunc.load_model('{{uri}}').predict(pandas.DataFrame([...]))  # columns: {columns}",
            "project": family.loading_call.format(path=folder)}


def _model_config(local_dir: Path, pyfunc: dict) -> dict:
    config = pyfunc.get("model_config")
    if isinstance(config, dict):
        return config
    if isinstance(config, str) and (local_dir / config).is_file():
        return json.loads((local_dir / config).read_text(encoding="utf-8"))
    return {}


def stage_flavour(root: Path, stage: str) -> str | None:
    """The flavour dvc.yaml declares for a stage that publishes a model (`meta.register.flavour`), else None."""
    from alignflow.runtime.fingerprint import _stage_info

    info = _stage_info(root, stage)
    register = info.registry if info is not None else None
    flavour = (register or {}).get("flavour")
    if flavour:
        check(str(flavour), f"dvc.yaml: stage {stage}: meta.register.flavour")
    return str(flavour) if flavour else None


def log_stage_model(ctx, staged: Path, final: Path, artifact_path: str = "model") -> None:
    """Log a stage's model folder: as an MLflow model now when the stage publishes it with a flavour,
    else as a bare folder once the stage succeeds (`ctx.log_artifacts_on_success`).

    `staged` is the folder being written (inside `ctx.output(...)`), `final` where it lands. The
    flavoured model is built from the staged folder before the outputs move, so a stage that then
    fails leaves it only on a FAILED run, which the registry never publishes. Records the seconds it
    took as the machine fact `model_logging_seconds`.
    """
    import time

    started = time.perf_counter()
    flavour = None if ctx._run is None else stage_flavour(ctx.root, ctx.name)  # no run: rank > 0, tracking off
    if flavour is None:
        ctx.log_artifacts_on_success(final, artifact_path)
        return
    log(Path(staged), flavour, artifact_path)
    ctx.write_machine_facts({"model_logging_seconds": round(time.perf_counter() - started, 2)})
