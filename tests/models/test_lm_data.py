import torch

from pipelines.data.lm_data import IGNORE_INDEX, collate_blocks, collate_pad, pack_corpus, sft_examples
from pipelines.data.template import format_prompt


def test_pack_corpus(tokenizer, corpus):
    blocks = pack_corpus(corpus[:50], tokenizer, block_size=16)
    assert blocks.dtype == torch.long and blocks.shape[1] == 16
    stream = []
    for t in corpus[:50]:
        stream += [tokenizer.bos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert blocks.shape[0] == len(stream) // 16
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    b = collate_blocks([blocks[0], blocks[1]])
    assert torch.equal(b["input_ids"], b["labels"]) and b["input_ids"].shape == (2, 16)


def _prompt_ids(tok, prompt):
    return [tok.bos_token_id] + tok(format_prompt(prompt), add_special_tokens=False)["input_ids"]


def test_sft_masking(tokenizer):
    (ex,) = sft_examples([{"prompt": "hi there", "response": "the cat sees a red box."}], tokenizer, 128)
    p = _prompt_ids(tokenizer, "hi there")
    r = tokenizer(" the cat sees a red box.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ex["input_ids"].tolist() == p + r
    assert ex["labels"].tolist() == [IGNORE_INDEX] * len(p) + r
    assert tokenizer.decode(ex["input_ids"].tolist(), skip_special_tokens=True) == "User: hi there\nAssistant: the cat sees a red box."


def test_sft_empty_strings(tokenizer):
    exs = sft_examples(
        [{"prompt": "", "response": ""}, {"prompt": "", "response": "ok"}, {"prompt": "q", "response": ""}, {}],
        tokenizer, 64,
    )
    for ex in exs:
        assert len(ex["input_ids"]) == len(ex["labels"]) > 0
    # empty response still trains eos
    assert exs[0]["labels"].tolist()[-1] == tokenizer.eos_token_id
    assert (exs[0]["labels"] != IGNORE_INDEX).sum() == 1


def test_sft_truncates_response(tokenizer):
    p = _prompt_ids(tokenizer, "hi")
    max_len = len(p) + 3
    (ex,) = sft_examples([{"prompt": "hi", "response": "the cat sees a red box today."}], tokenizer, max_len)
    assert len(ex["input_ids"]) == max_len
    assert ex["input_ids"].tolist()[: len(p)] == p
    assert (ex["labels"] != IGNORE_INDEX).sum() == 3


def test_sft_overlong_prompt_keeps_tail(tokenizer):
    prompt = "the cat sees a red box " * 20
    full = _prompt_ids(tokenizer, prompt)
    (ex,) = sft_examples([{"prompt": prompt, "response": "yes"}], tokenizer, 10)
    assert ex["input_ids"].tolist() == full[-10:]
    assert (ex["labels"] == IGNORE_INDEX).all()
    assert tokenizer.decode(ex["input_ids"].tolist()).endswith("Assistant:")


def test_collate_pad(tokenizer):
    exs = sft_examples([{"prompt": "a", "response": "b"}, {"prompt": "a longer prompt", "response": "the cat sees"}], tokenizer, 64)
    b = collate_pad(exs, pad_id=tokenizer.pad_token_id)
    n0 = len(exs[0]["input_ids"])
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
    assert b["attention_mask"][0].tolist() == [1] * n0 + [0] * (b["input_ids"].shape[1] - n0)
    assert (b["input_ids"][0, n0:] == tokenizer.pad_token_id).all()
    assert (b["labels"][0, n0:] == IGNORE_INDEX).all()
    assert b["labels"][1].tolist() == exs[1]["labels"].tolist()
