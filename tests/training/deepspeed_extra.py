"""DeepSpeed is the `deepspeed` extra: its tests skip where the distribution is not installed, and fail
where it is installed but broken (`make setup` installs it, so the project's own venv runs them)."""
from importlib.metadata import PackageNotFoundError, distribution

import pytest

try:
    distribution("deepspeed")
    INSTALLED = True
except PackageNotFoundError:
    INSTALLED = False

requires_deepspeed = pytest.mark.skipif(not INSTALLED, reason="DeepSpeed is the 'deepspeed' extra, not installed here")
