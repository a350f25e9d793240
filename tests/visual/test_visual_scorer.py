"""The visual reward model behind the reward registry's protocol, and the best-of-n picks built on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.models.reward.visual import VisualRewardModel, load_scorer
from pipelines.models.vlm.llava import build_llava, train_vlm_tokenizer
from pipelines.visual.best_of_n import reward_picks
from pipelines.visual.rm_training import VARIANTS, phases_needed, variant_phases
from tests.visual.test_vlm_reward import CFG, WORDS


@pytest.fixture(scope="module")
def saved_rm(tmp_path_factory):
    rng = np.random.default_rng(0)
    tok = train_vlm_tokenizer([" ".join(rng.choice(WORDS, 8)) for _ in range(200)], 300)
    out = tmp_path_factory.mktemp("visual-rm") / "model"
    VisualRewardModel(build_llava(CFG, tok, seed=0), tok, 40, seed=3).save(out)
    return out


def _pixels(record: dict) -> np.ndarray | None:
    if not record.get("image"):
        return None
    img = np.full((24, 24, 3), 200, dtype=np.uint8)
    img[4:20, 4:20, int(record["image"][0])] = 255
    return img


PROMPTS = [{"prompt": "what colour is the square", "image": "0.png"},
           {"prompt": "how many circles are there", "image": "2.png"},
           {"prompt": "describe the scene", "image": None}]
CANDIDATES = [["red", "blue", "there is a red square", "green"],
              ["two", "there is a circle", "a", "the circle is left"],
              ["a red circle", "blue square right", "two", "there is"]]


def test_choose_best_is_the_argmax_of_score_and_prob_is_the_reward_gap(saved_rm):
    """Fails if choose_best, score and prob_first_better stop agreeing (the registry treats them as one model)."""
    scorer = load_scorer(saved_rm, images=_pixels)
    flat = scorer.score([p for p, c in zip(PROMPTS, CANDIDATES) for _ in c], [y for c in CANDIDATES for y in c])
    assert flat.shape == (12,) and flat.dtype == torch.float32
    expected = [int(row.argmax()) for row in flat.reshape(3, 4)]
    assert scorer.choose_best(PROMPTS, CANDIDATES) == expected
    a, b = [c[0] for c in CANDIDATES], [c[1] for c in CANDIDATES]
    p = scorer.prob_first_better(PROMPTS, a, b)
    gap = scorer.score(PROMPTS, a) - scorer.score(PROMPTS, b)
    assert torch.allclose(p, torch.sigmoid(gap)) and torch.allclose(p + scorer.prob_first_better(PROMPTS, b, a),
                                                                    torch.ones(3))
    # the image matters: the same texts under another image score differently
    other = [{**r, "image": "1.png"} if r["image"] else r for r in PROMPTS]
    assert not torch.allclose(scorer.score(other, a), scorer.score(PROMPTS, a))


def test_best_of_n_picks_for_nested_n_match_choose_best_on_each_prefix(saved_rm):
    """Fails if scoring the pool once gave a pick other than the model's own choice among the first n."""
    scorer = load_scorer(saved_rm, images=_pixels)
    picks = reward_picks(scorer, PROMPTS, CANDIDATES, [1, 2, 4])
    assert picks[1].tolist() == [0, 0, 0]
    for n in (2, 4):
        assert picks[n].tolist() == scorer.choose_best(PROMPTS, [c[:n] for c in CANDIDATES])


def test_scorer_refuses_missing_images_and_mismatched_lengths(saved_rm):
    """Fails if a visual scorer could be built without images or scored prompts against the wrong responses."""
    with pytest.raises(ValueError, match="needs `images`"):
        load_scorer(saved_rm)
    scorer = load_scorer(saved_rm, images=_pixels)
    with pytest.raises(ValueError, match="3 prompts but 2"):
        scorer.score(PROMPTS, ["a", "b"])
    with pytest.raises(ValueError, match="no candidates"):
        scorer.choose_best(PROMPTS, [["a"], [], ["b"]])


def test_variants_take_their_phases_from_their_selection():
    """Fails if a variant trained on another method's picks, or the baseline needed a selection at all."""
    pools = {"text": [{"id": f"t{i}"} for i in range(4)], "caption": [{"id": f"c{i}"} for i in range(4)]}
    selections = {"ot": {"text": ["t1"], "caption": ["c2", "c3"]}, "random": {"text": ["t0"], "caption": ["c0"]}}
    visual = [{"id": "v0"}]
    phases = variant_phases("no_text", visual, selections, pools)
    assert [(name, [r["id"] for r in recs]) for name, recs in phases] == [("caption", ["c2", "c3"]),
                                                                          ("visual", ["v0"])]
    assert variant_phases("visual_only", visual, None, {}) == [("visual", visual)]
    assert [r["id"] for r in variant_phases("random", visual, selections, pools)[0][1]] == ["t0"]
    with pytest.raises(ValueError, match="unknown visual reward-model variant"):
        variant_phases("text_only", visual, selections, pools)
    assert phases_needed(["visual_only"]) == ["visual"]
    assert phases_needed(["no_caption", "no_text"]) == ["text", "caption", "visual"]
    assert set(VARIANTS) >= {"rovrm", "visual_only"}
