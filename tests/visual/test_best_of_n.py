"""Best-of-n bookkeeping: a random pick is scored by its expectation, choosers by their pick."""
import numpy as np
import pytest

from pipelines.visual.best_of_n import best_of_n_table
from pipelines.visual.scene import Obj, Scene

SCENE = Scene((Obj("circle", "red", "small", "top", "left"),))
PROMPT = {"kind": "count", "question": "How many circles are there?", "shape": "circle"}
RIGHT, WRONG = "There is 1 circle.", "There are 2 circles."  # hallucination 0 and 1 by the oracle


def _table(picks_at_4: list[int]):
    prompts = [{"id": f"p{i}", "prompt": PROMPT["question"], "spec": {"scene": SCENE.to_dict(), "prompt": PROMPT}}
               for i in range(2)]
    samples = [[WRONG, RIGHT, WRONG, WRONG], [WRONG, WRONG, RIGHT, RIGHT]]
    picks = {"rovrm": {1: np.zeros(2, dtype=int), 4: np.array(picks_at_4)},
             "visual_only": {1: np.zeros(2, dtype=int), 4: np.zeros(2, dtype=int)}}
    return best_of_n_table(prompts, samples, [1, 4], picks, n_boot=50, seed=0)


def test_random_pick_is_the_mean_over_the_first_n_samples():
    _, m = _table([1, 2])
    assert m["bon/random/n1/hallucination_rate"] == 1.0  # both first samples are wrong
    assert m["bon/random/n4/hallucination_rate"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert m["bon/oracle/n4/hallucination_rate"] == 0.0
    assert m["bon/rovrm/n4/hallucination_rate"] == 0.0 and m["bon/visual_only/n4/hallucination_rate"] == 1.0


def test_paired_differences_against_random_and_visual_only():
    _, m = _table([1, 2])
    assert m["bon/n4/hallucination_rate/rovrm_minus_random"] == pytest.approx(-0.625)
    assert m["bon/n4/hallucination_rate/rovrm_minus_visual_only"] == pytest.approx(-1.0)
    _, worse = _table([0, 0])  # picking wrong answers is worse than the random expectation
    assert worse["bon/n4/hallucination_rate/rovrm_minus_random"] == pytest.approx(0.375)
