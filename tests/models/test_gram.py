"""GRAM generative reward model: loss identity, readout, truncation, training, selection, IO."""

import functools
import random

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from pipelines.data.lm_data import IGNORE_INDEX, collate_pad
from pipelines.models.causal_lm import build_llama
from pipelines.models.reward import (
    GenerativeRewardModel,
    candidate_token_ids,
    collate_judge,
    gram_stage1_loss,
    gram_stage2_loss,
    label_smoothed_pair_loss,
    preference_examples,
    render_judge,
    unlabeled_pair_examples,
)
from pipelines.models.reward.judge import judge_tokens, min_judge_length
from pipelines.models.reward.selection import knockout_many, pairwise_scores, rank_by_scores
from pipelines.models.reward.truncation import allocate, fair_shares
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train

MARKER = " wow wow"
MAX_LEN = 112


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest (and without contention noise) on one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def toy_records(corpus, n, seed):
    """Separable preferences: the chosen response carries a marker phrase."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, a, b = rng.sample(corpus, 3)
        out.append({"prompt": p, "chosen": a + MARKER, "rejected": b})
    return out


def accuracy(rm, records):
    r = rm.prob_first_better(
        [x["prompt"] for x in records], [x["chosen"] for x in records], [x["rejected"] for x in records]
    )
    return float((r["p"] > 0.5).float().mean())


@pytest.fixture(scope="module")
def rm(tokenizer, tiny_cfg_session):
    return GenerativeRewardModel(build_llama(tiny_cfg_session, tokenizer, seed=0), tokenizer, MAX_LEN)


@pytest.fixture(scope="module")
def trained(tokenizer, tiny_cfg_session, corpus):
    """A GRAM trained for 40 steps on the toy task, plus accuracies before/after."""
    model = GenerativeRewardModel(build_llama(tiny_cfg_session, tokenizer, seed=0), tokenizer, MAX_LEN)
    test = toy_records(corpus, 64, seed=1)
    before = accuracy(model, test)
    data = preference_examples(toy_records(corpus, 256, seed=0), tokenizer, MAX_LEN, seed=0)
    cfg = TrainConfig(lr=3e-3, max_steps=40, batch_size=16, warmup_steps=5, log_every=10)
    result = train(
        model, data, functools.partial(gram_stage2_loss, eps=0.1), cfg, progress=False,
        collate_fn=functools.partial(collate_judge, pad_id=tokenizer.pad_token_id),
    )
    return model, before, accuracy(model, test), result


# --------------------------------------------------------------------------- loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3])
def test_label_smoothing_identity(eps, dtype):
    gen = torch.Generator().manual_seed(0)
    lw = (torch.randn(64, generator=gen, dtype=dtype) * 3).requires_grad_()
    ll = (torch.randn(64, generator=gen, dtype=dtype) * 3).requires_grad_()
    loss = label_smoothed_pair_loss(lw, ll, eps)
    assert loss.dtype == dtype
    (gw, gl) = torch.autograd.grad(loss, (lw, ll))
    lw2, ll2 = lw.detach().clone().requires_grad_(), ll.detach().clone().requires_grad_()
    d = lw2 - ll2
    ref = (-F.logsigmoid(d) + eps / 2 * d).mean()
    (rw, rl) = torch.autograd.grad(ref, (lw2, ll2))
    assert abs(loss.item() - ref.item()) < 1e-6
    assert torch.allclose(gw, rw, rtol=0, atol=1e-6) and torch.allclose(gl, rl, rtol=0, atol=1e-6)


def test_stage2_loss_bare_lm_matches_rm(rm, tokenizer, corpus):
    batch = collate_judge(preference_examples(toy_records(corpus, 6, 3), tokenizer, MAX_LEN, seed=0), 0)
    loss, metrics = gram_stage2_loss(rm, batch, eps=0.1)
    loss2, _ = gram_stage2_loss(rm.causal_lm, batch, eps=0.1, candidate_ids=rm.candidate_ids)
    assert torch.allclose(loss, loss2) and set(metrics) == {"loss", "acc"}
    with pytest.raises(ValueError, match="candidate_ids"):
        gram_stage2_loss(rm.causal_lm, batch)


# --------------------------------------------------------------------------- template / tokens


def test_candidate_ids_and_render(tokenizer):
    prefix, a, b = candidate_token_ids(tokenizer)
    assert a != b and tokenizer.decode([a]) == "A" and tokenizer.decode([b]) == "B"
    jt = judge_tokens(tokenizer)
    assert jt.cue[len(jt.cue) - len(prefix):] == prefix
    text = render_judge(" q ", "ans a", "ans b")
    assert text.startswith("User question: q\n[Response A]\nans a\n[Response B]\nans b") and text.endswith(
        "#Preferred:"
    )


def _word_level_tokenizer(vocab):
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def test_candidate_ids_other_tokenizers():
    ok = _word_level_tokenizer({"[UNK]": 0, "[PAD]": 1, "A": 2, "B": 3})
    assert candidate_token_ids(ok) == ([], 2, 3)
    collapsed = _word_level_tokenizer({"[UNK]": 0, "[PAD]": 1})  # both become [UNK]
    with pytest.raises(ValueError, match="same token id"):
        candidate_token_ids(collapsed)


def test_fair_shares_and_allocate():
    assert fair_shares([10, 1], 5) == [4, 1]
    assert fair_shares([10, 10], 5) == [3, 2]
    assert fair_shares([0, 7], 3) == [0, 3]
    assert allocate(5, [5, 5], 20) == (5, [5, 5])  # fits: nothing cut
    assert allocate(4, [50, 50], 20) == (4, [8, 8])  # responses cut first
    assert allocate(40, [50, 50], 20) == (10, [5, 5])  # floor: responses keep half the budget
    assert allocate(40, [2, 50], 20) == (10, [2, 8])  # water-filling, prompt gets the rest
    with pytest.raises(ValueError, match="template"):
        allocate(1, [1], -1)


@pytest.mark.parametrize("max_length", [None, 64, 80, MAX_LEN])
def test_truncation_never_crashes(tokenizer, corpus, max_length):
    jt = judge_tokens(tokenizer)
    max_length = max_length or min_judge_length(jt)
    long_p = " ".join(corpus[:60]) + " FINAL"
    long_r = " ".join(corpus[60:120])
    cases = [("", "", ""), (long_p, "", ""), ("", long_r, long_r), (long_p, long_r, "short"), ("q", "a", "b")]
    for p, a, b in cases:
        ex = preference_examples([{"prompt": p, "chosen": a, "rejected": b}], tokenizer, max_length, both_orders=True)
        for e in ex:
            ids = e["input_ids"].tolist()
            assert len(ids) <= max_length
            assert ids[-len(jt.cue):] == jt.cue and ids[: len(jt.bos + jt.header)] == jt.bos + jt.header
        st = unlabeled_pair_examples([{"prompt": p, "response_a": a, "response_b": b}], tokenizer, max_length + 2)
        ids, labels = st[0]["input_ids"], st[0]["labels"]
        assert len(ids) <= max_length + 2 and ids[-1] == tokenizer.eos_token_id and labels[-1] == ids[-1]
    # the end of an over-long prompt survives; responses share the budget
    ids = preference_examples([{"prompt": long_p, "chosen": long_r, "rejected": long_r}], tokenizer, MAX_LEN)[0]
    text = tokenizer.decode(ids["input_ids"].tolist())
    assert len(ids["input_ids"]) == MAX_LEN and "FINAL\n[Response A]\nthe" in text
    a_part = text.split("[Response A]\n")[1].split("\n[Response B]")[0]
    b_part = text.split("[Response B]\n")[1].split("\n#Preferred")[0]
    assert abs(len(tokenizer(a_part)["input_ids"]) - len(tokenizer(b_part)["input_ids"])) <= 1
    with pytest.raises(ValueError, match="template"):
        GenerativeRewardModel(None, tokenizer, min_judge_length(jt) - 1)


def test_preference_examples_orders(tokenizer):
    recs = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(40)]
    one = preference_examples(recs, tokenizer, MAX_LEN, seed=5)
    assert [e["winner"] for e in one] == [e["winner"] for e in preference_examples(recs, tokenizer, MAX_LEN, seed=5)]
    assert 0 < sum(e["winner"] for e in one) < 40
    for e in one:
        text = tokenizer.decode(e["input_ids"].tolist())
        assert ("[Response A]\ngood" in text) == (e["winner"] == 0)
    both = preference_examples(recs[:3], tokenizer, MAX_LEN, both_orders=True)
    assert [e["winner"] for e in both] == [0, 1] * 3
    batch = collate_judge(both, tokenizer.pad_token_id)
    assert batch["winner"].tolist() == [0, 1] * 3 and batch["attention_mask"][:, 0].all()


def test_stage1_examples_and_loss(tokenizer, tiny_cfg_session, tmp_path):
    recs = [{"prompt": "the cat", "response_a": "sees a dog.", "response_b": "likes 3 apples!"}] * 8
    ex = unlabeled_pair_examples(recs, tokenizer, MAX_LEN)
    ids, labels = ex[0]["input_ids"], ex[0]["labels"]
    targets = tokenizer.decode(ids[labels != IGNORE_INDEX].tolist())
    assert targets == "sees a dog.likes 3 apples!<|eos|>"
    assert tokenizer.decode(ids.tolist()).startswith("<|bos|>User question: the cat\n[Response A]\nsees")
    model = GenerativeRewardModel(build_llama(tiny_cfg_session, tokenizer, seed=1), tokenizer, MAX_LEN)
    collate = functools.partial(collate_pad, pad_id=tokenizer.pad_token_id)
    before, _ = gram_stage1_loss(model, collate(ex[:2]))
    train(model, ex, gram_stage1_loss, TrainConfig(lr=3e-3, max_steps=10, batch_size=4), progress=False,
          collate_fn=collate, checkpoint_dir=str(tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / "step_00000010" / "model.safetensors").is_file()  # loop can checkpoint a GRAM
    after, _ = gram_stage1_loss(model.causal_lm, collate(ex[:2]))
    assert after.item() < before.item()


# --------------------------------------------------------------------------- readout


def test_swap_average_and_pair_logits(rm, corpus):
    rng = random.Random(4)
    prompts = [rng.choice(corpus) for _ in range(7)]
    y1 = [rng.choice(corpus) for _ in range(7)]
    y2 = [rng.choice(corpus) + " !" * i for i in range(7)]
    fwd = rm.prob_first_better(prompts, y1, y2, batch_size=3)
    rev = rm.prob_first_better(prompts, y2, y1)
    assert torch.allclose(fwd["p"] + rev["p"], torch.ones(7), atol=1e-5)
    assert torch.allclose(fwd["p"], 0.5 * (fwd["p_order1"] + fwd["p_order2"]))
    assert torch.allclose(fwd["p_order1"], 1 - rev["p_order2"], atol=1e-5)
    l12 = rm.pair_logits(prompts, y1, y2)
    l21 = rm.pair_logits(prompts, y2, y1, batch_size=1)
    assert l12.shape == (7, 2)
    assert torch.allclose(fwd["p_order1"], torch.softmax(l12, -1)[:, 0], atol=1e-5)
    assert torch.allclose(fwd["p_order2"], torch.softmax(l21, -1)[:, 1], atol=1e-5)
    # right padding is exact: batched logits match one-at-a-time logits
    assert torch.allclose(rm.pair_logits(prompts, y1, y2, batch_size=1), l12, atol=1e-5)
    rm.train()
    again = rm.prob_first_better(prompts, y1, y2)
    assert rm.training  # the caller's mode is restored
    rm.eval()
    assert torch.allclose(again["p"], fwd["p"], atol=1e-5)
    empty = rm.prob_first_better([], [], [])
    assert empty["p"].numel() == 0


# --------------------------------------------------------------------------- selection


def test_knockout_with_mock_comparator():
    values = [[3, 9, 1, 9, 4], [2], [5, 1], [0, 0, 7]]
    calls = []

    def compare(triples):
        calls.append(len(triples))
        return [
            0.5 if values[g][i] == values[g][j] else float(values[g][i] > values[g][j]) for g, i, j in triples
        ]

    assert knockout_many([len(v) for v in values], compare) == [1, 0, 0, 2]  # ties keep the champion
    assert calls == [3, 2, 1, 1] and sum(calls) == sum(len(v) - 1 for v in values)
    scores = pairwise_scores(5, lambda t: compare([(0, i, j) for _, i, j in t]))
    assert rank_by_scores(scores) == [1, 3, 4, 0, 2]
    with pytest.raises(ValueError):
        knockout_many([2, 0], compare)


def test_training_raises_accuracy(trained):
    model, before, after, result = trained
    assert after >= 0.9 and after > before
    assert result.history[-1]["train_acc"] > 0.8


def test_knockout_and_rank_pick_marked(trained, corpus):
    model, *_ = trained
    rng = random.Random(9)
    prompts, lists, best = [], [], []
    for n in (1, 2, 4, 5):
        cands = rng.sample(corpus, n)
        k = rng.randrange(n)
        cands[k] += MARKER
        prompts.append(rng.choice(corpus))
        lists.append(cands)
        best.append(k)
    assert model.best_of_n_knockout_many(prompts, lists) == best
    assert model.best_of_n_knockout(prompts[3], lists[3]) == best[3]
    order = model.rank(prompts[3], lists[3])
    assert sorted(order) == list(range(5)) and order[0] == best[3]


# --------------------------------------------------------------------------- IO


def test_save_load_round_trip(trained, corpus, tmp_path):
    model, *_ = trained
    model.save(str(tmp_path / "gram"))
    assert (tmp_path / "gram" / "gram_config.json").is_file() and not list((tmp_path / "gram").glob("*.bin"))
    loaded = GenerativeRewardModel.load(str(tmp_path / "gram"))
    assert loaded.max_length == model.max_length and loaded.candidate_ids == model.candidate_ids
    recs = toy_records(corpus, 9, seed=2)
    args = ([r["prompt"] for r in recs], [r["chosen"] for r in recs], [r["rejected"] for r in recs])
    a, b = model.prob_first_better(*args), loaded.prob_first_better(*args)
    assert all(torch.equal(a[k], b[k]) for k in ("p", "p_order1", "p_order2"))
    with pytest.raises(FileNotFoundError):
        GenerativeRewardModel.load(str(tmp_path))
