"""alignflow infrastructure: profiles, stage runtime, tracking, registry, lineage and the CLI.

The science lives in `pipelines/`; this package is the glue between it and DVC, Prefect and MLflow.
"""
import os
import sys

# Telemetry calls would try the network, which these machines do not have.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_MININTERVAL", "2")  # progress bars in log files stay readable


def use_this_interpreter() -> None:
    """Make `python` in DVC stage commands the interpreter running alignflow (the project venv)."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path
