"""LRHP pair encoder and objectives (pipelines/models/preference)."""
import math
from functools import partial

import pytest
import torch

from pipelines.models.causal_lm import build_llama
from pipelines.models.preference import (PAIR_TOKEN, PairEncoder, collate_pairs, make_lrhp_loss, pair_examples,
                                         read_pairs, supcon_loss)
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train

GOOD = ["a red box.", "the green tree.", "3 apples."]
BAD = ["the old book!", "a small house!", "42 stars!"]


def _encoder(tokenizer, tiny_cfg, dim=8):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path) if tokenizer.name_or_path else None
    tok = tok or tokenizer
    return PairEncoder(build_llama(tiny_cfg, tok, seed=0), tok, dim=dim, max_length=64, seed=0)


def _toy_records(n):
    subjects = ["the cat sees", "a dog likes", "my friend reads", "the robot builds"]
    return [{"prompt": subjects[i % 4], "chosen": GOOD[i % 3], "rejected": BAD[(i // 3) % 3],
             "kind": "good_over_bad"} for i in range(n)]


@pytest.fixture
def fresh_tokenizer(corpus):
    from pipelines.models.tokenizer import train_bpe_tokenizer
    return train_bpe_tokenizer(corpus, vocab_size=320, min_frequency=2, model_max_length=128)


def test_pair_token_is_added_and_read_last(fresh_tokenizer, tiny_cfg):
    """Fails if the <pair> token is not a new vocabulary entry or is not the last id of a pair sequence."""
    enc = _encoder(fresh_tokenizer, tiny_cfg)
    assert enc.tokenizer.convert_tokens_to_ids(PAIR_TOKEN) == enc.pair_id
    assert enc.causal_lm.get_input_embeddings().weight.shape[0] > enc.pair_id
    ids = enc.ids("the cat sees", "a red box.", "the old book!")
    assert ids[-1] == enc.pair_id and ids.count(enc.pair_id) == 1
    z = enc.embed(["the cat sees"], ["a red box."], ["the old book!"])
    assert z.shape == (1, 8) and torch.allclose(z.norm(dim=-1), torch.ones(1))


def test_save_load_round_trips_exactly(fresh_tokenizer, tiny_cfg, tmp_path):
    """Fails if a saved encoder (backbone, <pair> row, projection, head) reloads to different vectors or logits."""
    enc = _encoder(fresh_tokenizer, tiny_cfg).eval()
    with torch.no_grad():
        enc.projection.weight.add_(0.1)
    recs = _toy_records(6)
    before = enc.embed_records(recs)
    enc.save(str(tmp_path / "m"))
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))
    again = PairEncoder.load(tmp_path / "m")
    after = again.embed_records(recs)
    assert torch.equal(before, after)
    assert torch.equal(enc.first_preferred_logit(before), again.first_preferred_logit(after))


def test_load_rejects_a_folder_that_is_not_an_encoder(tmp_path):
    """Fails if loading a folder without the LRHP files does not name the missing file."""
    with pytest.raises(FileNotFoundError, match="lrhp_config.json"):
        PairEncoder.load(tmp_path)


def test_supcon_matches_hand_computation():
    """Fails if the contrastive term drifts from Khosla et al.'s formula (positives, denominator, skipped anchors)."""
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    t = 0.5
    # anchors 0 and 1 are positives of each other; anchor 2 has no positive and is skipped.
    a0 = -(1.2 - math.log(math.exp(1.2) + math.exp(0.0)))
    a1 = -(1.2 - math.log(math.exp(1.2) + math.exp(1.6)))
    got = supcon_loss(z, torch.tensor([0, 0, 1]), t)
    assert got.item() == pytest.approx((a0 + a1) / 2, rel=1e-6)
    assert supcon_loss(z, torch.tensor([0, 1, 2]), t).item() == 0.0


def test_swapped_copy_is_a_hard_negative(fresh_tokenizer, tiny_cfg):
    """Fails if a pair and its order-swapped copy share a contrastive label, or same-kind same-order pairs differ."""
    enc = _encoder(fresh_tokenizer, tiny_cfg)
    recs = _toy_records(4)
    ex = pair_examples(recs, enc, [0, 0, 1, 1], seed=3)
    batch = collate_pairs(ex, enc.pad_id, swap_negatives=True)
    labels, first = batch["labels"], batch["first_is_chosen"]
    assert batch["input_ids"].shape[0] == 8
    for i in range(4):
        assert labels[i] != labels[4 + i] and first[i] == 1 - first[4 + i]
        assert batch["input_ids"][4 + i].tolist()[: len(ex[i]["swapped_ids"])] == ex[i]["swapped_ids"]
    kinds = [0, 0, 1, 1] * 2
    for i in range(8):
        for j in range(8):
            same = kinds[i] == kinds[j] and first[i] == first[j]
            assert bool(labels[i] == labels[j]) == bool(same)
    single = collate_pairs(ex, enc.pad_id, swap_negatives=False)
    assert single["input_ids"].shape[0] == 4


def test_order_aware_after_training(fresh_tokenizer, tiny_cfg):
    """Fails if swapping chosen and rejected does not flip the trained preference head's decision."""
    enc = _encoder(fresh_tokenizer, tiny_cfg)
    recs = _toy_records(48)
    examples = pair_examples(recs, enc, [0] * len(recs), seed=0)
    cfg = TrainConfig(lr=5e-3, weight_decay=0.0, max_steps=25, batch_size=8, warmup_steps=3, log_every=100)
    train(enc, examples, make_lrhp_loss(1.0, 0.5, 0.1), cfg, progress=False,
          collate_fn=partial(collate_pairs, pad_id=enc.pad_id, swap_negatives=True))
    enc.eval()
    prompts = [r["prompt"] for r in recs]
    forward = enc.first_preferred_logit(enc.embed(prompts, [r["chosen"] for r in recs], [r["rejected"] for r in recs]))
    swapped = enc.first_preferred_logit(enc.embed(prompts, [r["rejected"] for r in recs], [r["chosen"] for r in recs]))
    flipped = ((forward > 0) & (swapped < 0)).float().mean().item()
    assert flipped >= 0.9


def test_bad_pairs_file_names_file_and_line(tmp_path):
    """Fails if a record without its kind field or with identical responses is not reported with file and line."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "family": "f", "rejected_error_type": "e"}\n'
                    '{"prompt": "p", "chosen": "a", "rejected": "b", "family": "f"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl: line 2: .*rejected_error_type"):
        read_pairs(path, "world")
    assert read_pairs(path, "family")[1]["kind"] == "f"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "a", "subset": "x"}\n')
    with pytest.raises(ValueError, match="line 1: .*identical"):
        read_pairs(path, "subset")
