import pytest


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    """A private MLflow SQLite store for one test."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    """One private MLflow SQLite store for a whole test module (creating a store costs seconds)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('module-store')}/mlflow.db")
    yield
    mlflow.set_tracking_uri(previous)
