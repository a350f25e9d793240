import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_tracking_in_the_checkout(tmp_path_factory):
    """Whatever a test does, MLflow never writes a store into the developer's checkout."""
    import os

    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-session')}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    yield
