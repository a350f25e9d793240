"""Bradley-Terry reward baseline: truncation, readout, training, best-of-n and IO."""

import functools
import random

import pytest
import torch

from pipelines.models.reward.bt import BTRewardModel, bt_examples, bt_ids, bt_loss, collate_bt
from pipelines.models.causal_lm import build_llama
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train

MARKER = " wow wow"
MAX_LEN = 80


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def toy_records(corpus, n, seed):
    rng = random.Random(seed)
    return [
        {"prompt": p, "chosen": a + MARKER, "rejected": b}
        for p, a, b in (rng.sample(corpus, 3) for _ in range(n))
    ]


def accuracy(model, records):
    r = model.prob_first_better(
        [x["prompt"] for x in records], [x["chosen"] for x in records], [x["rejected"] for x in records]
    )
    return float((r["p"] > 0.5).float().mean())


@pytest.fixture(scope="module")
def bt(tokenizer, tiny_cfg_session):
    return BTRewardModel(build_llama(tiny_cfg_session, tokenizer, seed=0), tokenizer, MAX_LEN, seed=0)


@pytest.fixture(scope="module")
def trained(tokenizer, tiny_cfg_session, corpus):
    model = BTRewardModel(build_llama(tiny_cfg_session, tokenizer, seed=0), tokenizer, MAX_LEN, seed=0)
    test = toy_records(corpus, 64, seed=1)
    before = accuracy(model, test)
    data = bt_examples(toy_records(corpus, 256, seed=0), tokenizer, MAX_LEN)
    cfg = TrainConfig(lr=3e-3, max_steps=30, batch_size=16, warmup_steps=3, log_every=10)
    result = train(model, data, bt_loss, cfg, progress=False,
                   collate_fn=functools.partial(collate_bt, pad_id=tokenizer.pad_token_id))
    return model, before, accuracy(model, test), result


def test_bt_ids_layout_and_truncation(tokenizer, corpus):
    ids = bt_ids(tokenizer, " the cat ", "sees a dog.", 128)
    assert tokenizer.decode(ids) == "<|bos|>User: the cat\nAssistant: sees a dog.<|eos|>"
    long_p, long_r = " ".join(corpus[:50]) + " FINAL", " ".join(corpus[50:100])
    cue = tokenizer("\nAssistant:", add_special_tokens=False)["input_ids"]
    for max_length in (len(bt_ids(tokenizer, "", "", 999)), 20, MAX_LEN):
        for p, r in [("", ""), (long_p, ""), ("", long_r), (long_p, long_r)]:
            ids = bt_ids(tokenizer, p, r, max_length)
            assert len(ids) <= max_length and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
            assert any(ids[i : i + len(cue)] == cue for i in range(len(ids)))
    text = tokenizer.decode(bt_ids(tokenizer, long_p, long_r, MAX_LEN))
    assert "FINAL\nAssistant: " in text  # prompt kept from its end
    with pytest.raises(ValueError, match="template"):
        bt_ids(tokenizer, "", "", 3)


def test_rewards_and_prob_readout(bt, corpus):
    rng = random.Random(3)
    prompts = [rng.choice(corpus) for _ in range(6)]
    y1 = [rng.choice(corpus) for _ in range(6)]
    y2 = [rng.choice(corpus) + " !" * i for i in range(6)]
    r1, r2 = bt.rewards(prompts, y1), bt.rewards(prompts, y2, batch_size=1)
    assert r1.shape == (6,) and torch.allclose(bt.rewards(prompts, y1, batch_size=1), r1, atol=1e-5)
    out = bt.prob_first_better(prompts, y1, y2)
    assert set(out) == {"p", "p_order1", "p_order2"}
    assert torch.allclose(out["p"], torch.sigmoid(r1 - r2), atol=1e-5)
    assert torch.equal(out["p"], out["p_order1"]) and torch.equal(out["p"], out["p_order2"])
    rev = bt.prob_first_better(prompts, y2, y1)
    assert torch.allclose(out["p"] + rev["p"], torch.ones(6), atol=1e-5)
    best = bt.best_of_n_argmax_many(prompts[:2], [y1[:3], y2[:4]])
    assert best == [int(bt.rewards([prompts[0]] * 3, y1[:3]).argmax()), int(bt.rewards([prompts[1]] * 4, y2[:4]).argmax())]


def test_head_seeded_and_rng_untouched(tokenizer, tiny_cfg_session):
    lm = build_llama(tiny_cfg_session, tokenizer, seed=0)
    state = torch.get_rng_state()
    a, b = BTRewardModel(lm, tokenizer, seed=1), BTRewardModel(lm, tokenizer, seed=1)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, BTRewardModel(lm, tokenizer, seed=2).head.weight)
    assert a.head.bias is None


def test_training_raises_accuracy(trained):
    model, before, after, result = trained
    assert after >= 0.9 and after > before
    assert result.history[-1]["train_acc"] > 0.8


def test_best_of_n_picks_marked(trained, corpus):
    model, *_ = trained
    rng = random.Random(11)
    prompts, lists, best = [], [], []
    for n in (1, 3, 6):
        cands = rng.sample(corpus, n)
        k = rng.randrange(n)
        cands[k] += MARKER
        prompts.append(rng.choice(corpus))
        lists.append(cands)
        best.append(k)
    assert model.best_of_n_argmax_many(prompts, lists) == best
    with pytest.raises(ValueError):
        model.best_of_n_argmax_many(["p"], [[]])


def test_save_load_round_trip(trained, corpus, tmp_path):
    model, *_ = trained
    out = tmp_path / "bt"
    model.save(str(out))
    assert (out / "reward_head.safetensors").is_file() and (out / "bt_config.json").is_file()
    assert not list(out.glob("*.bin"))
    loaded = BTRewardModel.load(str(out))
    assert not loaded.training and loaded.max_length == MAX_LEN
    recs = toy_records(corpus, 8, seed=5)
    ps, rs = [r["prompt"] for r in recs], [r["chosen"] for r in recs]
    assert torch.equal(model.rewards(ps, rs), loaded.rewards(ps, rs))
    with pytest.raises(FileNotFoundError):
        BTRewardModel.load(str(tmp_path))
