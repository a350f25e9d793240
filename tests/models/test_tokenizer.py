import pytest

from pipelines.models.tokenizer import load_tokenizer, train_bpe_tokenizer

SAMPLES = [
    "the cat sees a red box.",
    "  leading and trailing spaces  ",
    "line one\nline two\n\n  indented\ttab",
    "digits 0123456789 and 3.14159, -42",
    "punctuation: !@#$%^&*()_+-=[]{};'\"\\|,.<>/?`~",
    "unicode: café naïve 日本語 🙂 Ωμέγα",
    "",
    " ",
    "User: hi\nAssistant: hello",
]


def test_special_tokens(tokenizer):
    assert tokenizer.bos_token == "<|bos|>" and tokenizer.eos_token == "<|eos|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.unk_token == "<|unk|>"
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    assert len(ids) == 4
    assert tokenizer.model_max_length == 128
    assert len(tokenizer) <= 320
    # no special tokens are added implicitly
    assert tokenizer("the cat")["input_ids"] == tokenizer("the cat", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_save_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(str(tmp_path / "tok"))
    for text in SAMPLES:
        a = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert loaded(text, add_special_tokens=False)["input_ids"] == a
        assert loaded.decode(a) == text
    assert loaded.pad_token_id == tokenizer.pad_token_id
    assert loaded.bos_token_id == tokenizer.bos_token_id


def test_load_missing(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        load_tokenizer(missing)


def test_pad_falls_back_to_eos(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    import json

    cfg_path = tmp_path / "tok" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("pad_token", None)
    cfg_path.write_text(json.dumps(cfg))
    stm = tmp_path / "tok" / "special_tokens_map.json"
    if stm.exists():
        m = json.loads(stm.read_text())
        m.pop("pad_token", None)
        stm.write_text(json.dumps(m))
    loaded = load_tokenizer(str(tmp_path / "tok"))
    assert loaded.pad_token == "<|eos|>"


def test_vocab_too_small():
    with pytest.raises(ValueError):
        train_bpe_tokenizer(["abc"], vocab_size=100)
