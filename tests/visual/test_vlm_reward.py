"""The LLaVA model, its sample layout, the visual reward model and the policy, on a tiny random model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.evaluation.reward_eval import evaluate_pairs
from pipelines.models.reward.visual import VisualRewardModel, load_visual_rm, pairwise_loss
from pipelines.models.vlm.encoding import Layout, collate_lm, collate_pairs, lm_examples, pair_examples
from pipelines.models.vlm.llava import build_llava, image_token_id, load_vlm, n_image_tokens, save_vlm, train_vlm_tokenizer
from pipelines.training.loop import train
from pipelines.visual.embed import embed_pairs
from pipelines.visual.policy import captioning_loss, sample_responses

CFG = {"vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 24, "patch_size": 8},
       "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "max_position_embeddings": 96}}
WORDS = ["red", "blue", "circle", "square", "left", "right", "there", "is", "a", "the", "how", "many"]


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 8)) for _ in range(200)]
    tok = train_vlm_tokenizer(texts, 300)
    return build_llava(CFG, tok, seed=0), tok


def _image(colour: int) -> np.ndarray:
    img = np.full((24, 24, 3), 230, dtype=np.uint8)
    img[4:20, 4:20, colour] = 255
    img[4:20, 4:20, (colour + 1) % 3] = 0
    return img


def _records(n: int) -> tuple[list[dict], list[np.ndarray]]:
    """The image is red or blue; the chosen response names its colour, the rejected one the other."""
    recs, imgs = [], []
    for i in range(n):
        red = i % 2 == 0
        recs.append({"id": str(i), "prompt": "what colour is the square", "chosen": "red" if red else "blue",
                     "rejected": "blue" if red else "red", "image": f"{i}.png"})
        imgs.append(_image(0 if red else 2))
    return recs, imgs


def test_layout_puts_one_image_token_per_patch_and_truncates_text_only(tiny):
    model, tok = tiny
    layout = Layout.of(model, tok, 40)
    ids, n_prompt = layout.sample_ids("how many " * 50, "there is a red circle " * 20, has_image=True)
    assert len(ids) == 40
    assert ids.count(image_token_id(tok)) == n_image_tokens(model) == 9
    assert ids[-1] == tok.eos_token_id and 0 < n_prompt < 40
    text_ids, _ = layout.sample_ids("how many", "red", has_image=False)
    assert image_token_id(tok) not in text_ids
    with pytest.raises(ValueError, match="max_length"):
        Layout.of(model, tok, 8)


def test_mixed_batch_of_image_and_text_samples_runs(tiny):
    model, tok = tiny
    layout = Layout.of(model, tok, 40)
    recs, imgs = _records(3)
    batch = collate_pairs(pair_examples(recs, layout, [imgs[0], None, imgs[2]]), layout.pad_id)
    assert batch["pixel_values"].shape == (4, 3, 24, 24)  # two image rows, chosen and rejected each
    rm = VisualRewardModel(model, tok, 40)
    assert rm(**batch).shape == (6,)


def test_reward_model_learns_image_dependent_preference_and_round_trips(tiny, tmp_path):
    model, tok = tiny
    rm = VisualRewardModel(build_llava(CFG, tok, seed=1), tok, 40, seed=0)
    assert rm.frozen_params > 0 and not any(p.requires_grad for p in rm.vlm.model.vision_tower.parameters())
    before = [p.clone() for p in rm.vlm.model.vision_tower.parameters()]
    recs, imgs = _records(32)
    by_id = {r["id"]: im for r, im in zip(recs, imgs)}
    examples = rm.examples(recs, lambda r: by_id[r["id"]])
    train(rm, examples, pairwise_loss, {"lr": 1e-3, "max_steps": 100, "batch_size": 8, "seed": 0},
          progress=False, collate_fn=lambda b: collate_pairs(b, rm.pad_id))
    metrics, _ = evaluate_pairs(rm.scorer(lambda r: by_id[r["id"]]), recs, "t", n_bootstrap=50)
    assert metrics["t/acc_label"] >= 0.9  # the text alone cannot tell: the image must be read
    assert all(torch.equal(a, b) for a, b in zip(before, rm.vlm.model.vision_tower.parameters()))
    rm.save(tmp_path / "rm")
    again = load_visual_rm(tmp_path / "rm")
    a = rm.reward_pairs(recs[:4], lambda r: by_id[r["id"]])
    b = again.reward_pairs(recs[:4], lambda r: by_id[r["id"]])
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_likelihood_anchored_reward_starts_as_the_models_own_response_likelihood(tiny):
    """Untrained, the anchored reward is the mean log-probability of the response tokens (eos included):
    minus the LM loss HF computes on the same sample with the prompt masked out."""
    model, tok = tiny
    rm = VisualRewardModel(model, tok, 40, likelihood_anchor=True)
    recs, imgs = _records(2)
    batch = collate_pairs(pair_examples(recs, rm.layout, imgs), rm.pad_id)
    with torch.no_grad():
        rewards = rm(**batch)
    for row in range(4):
        length = int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row:row + 1, :length]
        labels = ids.clone()
        labels[:, : int(batch["response_start"][row])] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                         pixel_values=batch["pixel_values"][row:row + 1]).loss
        assert float(rewards[row]) == pytest.approx(-float(loss), abs=1e-4)
    with pytest.raises(ValueError, match="response_start"):
        rm(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])


def test_anchored_reward_model_learns_the_image_and_round_trips_its_scale(tiny, tmp_path):
    model, tok = tiny
    rm = VisualRewardModel(build_llava(CFG, tok, seed=3), tok, 40, seed=0, likelihood_anchor=True)
    assert float(rm.head.weight.abs().sum()) == 0.0
    recs, imgs = _records(32)
    by_id = {r["id"]: im for r, im in zip(recs, imgs)}
    train(rm, rm.examples(recs, lambda r: by_id[r["id"]]), pairwise_loss,
          {"lr": 1e-3, "max_steps": 100, "batch_size": 8, "seed": 0}, progress=False,
          collate_fn=lambda b: collate_pairs(b, rm.pad_id))
    metrics, _ = evaluate_pairs(rm.scorer(lambda r: by_id[r["id"]]), recs, "t", n_bootstrap=50)
    assert metrics["t/acc_label"] >= 0.9
    assert float(rm.likelihood_scale) != 1.0  # the scale trains with the rest
    rm.save(tmp_path / "rm")
    again = load_visual_rm(tmp_path / "rm")
    assert again.likelihood_anchor and float(again.likelihood_scale) == pytest.approx(float(rm.likelihood_scale))
    np.testing.assert_allclose(rm.reward_pairs(recs[:4], lambda r: by_id[r["id"]])[0],
                               again.reward_pairs(recs[:4], lambda r: by_id[r["id"]])[0], atol=1e-5)


def test_a_head_only_reward_model_saved_as_format_v1_still_loads(tiny, tmp_path):
    model, tok = tiny
    rm = VisualRewardModel(model, tok, 40, seed=0)
    rm.save(tmp_path / "rm")
    cfg = tmp_path / "rm" / "visual_rm.json"
    cfg.write_text(json.dumps({"format": "visual-rm-v1", "max_length": 40}))
    again = load_visual_rm(tmp_path / "rm")
    assert not again.likelihood_anchor
    torch.testing.assert_close(again.head.weight, rm.head.weight)
    cfg.write_text(json.dumps({"format": "visual-rm-v0", "max_length": 40}))
    with pytest.raises(ValueError, match="visual-rm-v0"):
        load_visual_rm(tmp_path / "rm")


def test_policy_pretraining_lowers_loss_and_sampling_is_reproducible(tiny, tmp_path):
    _, tok = tiny
    model = build_llava(CFG, tok, seed=2)
    layout = Layout.of(model, tok, 40)
    recs, imgs = _records(16)
    sft = [{"prompt": r["prompt"], "response": r["chosen"]} for r in recs]
    examples = lm_examples(sft, layout, imgs)
    batch = collate_lm(examples[:4], layout.pad_id)
    assert (batch["labels"][:, : examples[0]["n_prompt"]] == -100).all()
    result = train(model, examples, captioning_loss, {"lr": 3e-3, "max_steps": 40, "batch_size": 8, "seed": 0},
                   progress=False, collate_fn=lambda b: collate_lm(b, layout.pad_id))
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    assert losses[-1] < losses[0]
    s1 = sample_responses(model, layout, recs[:2], imgs[:2], n=3, max_new_tokens=5, temperature=1.0, seed=7)
    s2 = sample_responses(model, layout, recs[:2], imgs[:2], n=3, max_new_tokens=5, temperature=1.0, seed=7)
    assert s1 == s2 and len(s1) == 2 and len(s1[0]) == 3
    save_vlm(model, tok, tmp_path / "vlm")
    loaded, tok2 = load_vlm(str(tmp_path / "vlm"))
    assert image_token_id(tok2) == image_token_id(tok)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vlm(str(tmp_path / "missing"))


def test_embeddings_are_deterministic_and_see_the_image(tiny):
    model, tok = tiny
    layout = Layout.of(model, tok, 40)
    recs, imgs = _records(4)
    by_id = {r["id"]: im for r, im in zip(recs, imgs)}
    e1 = embed_pairs(model, layout, recs, lambda r: by_id[r["id"]], batch_size=3)
    e2 = embed_pairs(model, layout, recs, lambda r: by_id[r["id"]], batch_size=2)
    np.testing.assert_allclose(e1, e2, atol=1e-5)
    text_only = embed_pairs(model, layout, recs, lambda r: None)
    assert not np.allclose(e1, text_only, atol=1e-3)
