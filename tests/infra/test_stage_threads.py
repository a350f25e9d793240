"""A stage's params thread count is capped by the cores it was given (OMP_NUM_THREADS)."""
import pytest

from alignflow.runtime.threads import capped_threads


@pytest.mark.parametrize("granted, requested, expected", [
    (None, 2, 2),   # run alone (no share set): the params decide
    ("1", 2, 1),    # `--jobs 2` on 2 cores: one thread, not two beside another stage (fails if uncapped)
    ("4", 2, 2),    # more cores granted than asked for: the params still decide
    ("", 3, 3),     # set but empty: ignored
    ("x", 3, 3),    # not a number: ignored
    ("2", 0, 1),    # never below one thread
])
def test_capped_threads(monkeypatch, granted, requested, expected):
    if granted is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", granted)
    assert capped_threads(requested) == expected
