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
# OpenMP threads that spin while waiting make 2-thread torch 4x slower as soon as another process
# wants a core (measured: 1.38 s vs 0.35 s per base-LM step); sleeping waiters cost little when quiet.
# Must be set before torch loads libgomp: stage processes inherit it from the CLI / flow process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def use_this_interpreter() -> None:
    """Make `python` in DVC stage commands the interpreter running alignflow (the project venv)."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path
