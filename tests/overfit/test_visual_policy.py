"""Sanity before tuning (issue 17): the LLaVA policy memorises image-dependent answers.

The same prompt with a red or a blue square: only the image tells the answer, so a policy that
reproduces every training answer greedily reads the image through the projector. (The visual
reward model's version of this check is tests/visual/test_vlm_reward.py, accuracy >= 0.9 on pairs
that only the image separates; PPO's and LiSA's are in test_lisa_and_ppo.py.)
"""
from __future__ import annotations

from pipelines.models.vlm.encoding import Layout, collate_lm, lm_examples
from pipelines.models.vlm.llava import build_llava
from pipelines.training.loop import train
from pipelines.visual.policy import captioning_loss, sample_responses
from tests.visual.test_vlm_reward import CFG, _records, tiny  # noqa: F401 - the tiny model fixture


def test_policy_answers_every_training_image_correctly(tiny):  # noqa: F811
    _, tok = tiny
    model = build_llava(CFG, tok, seed=3)
    layout = Layout.of(model, tok, 40)
    recs, imgs = _records(8)
    sft = [{"prompt": r["prompt"], "response": r["chosen"]} for r in recs]
    train(model, lm_examples(sft, layout, imgs), captioning_loss,
          {"lr": 3e-3, "max_steps": 80, "batch_size": 8, "seed": 0}, progress=False,
          collate_fn=lambda b: collate_lm(b, layout.pad_id))
    answers = sample_responses(model.eval(), layout, recs, imgs, n=1, max_new_tokens=3, temperature=1.0, seed=0,
                               greedy=True)
    assert [a[0].strip() for a in answers] == [r["chosen"] for r in recs]
