import pytest

from pipelines.speech.corpus import generate_corpus
from pipelines.speech.vocab import SPECIALS, Vocab, train_vocab


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(600, seed=5)


@pytest.fixture(scope="module")
def vocab(corpus):
    return train_vocab([p[k] for p in corpus for k in ("en", "de")], vocab_size=800)


def test_special_ids(vocab):
    assert [vocab.tokenizer.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3, 4]
    assert (vocab.blank_id, vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3, 4)
    assert len(vocab) <= 800


def test_round_trip_on_corpus(vocab, corpus):
    for p in corpus:
        for text in (p["en"], p["de"]):
            ids = vocab.encode(text)
            assert ids and min(ids) >= len(SPECIALS)  # no specials, no <unk>
            assert vocab.decode(ids) == text


def test_round_trip_on_unseen_sentences(vocab):
    # new sentences from the same lexicon: same characters, so decoding must still be exact
    for p in generate_corpus(200, seed=99):
        assert vocab.decode(vocab.encode(p["de"])) == p["de"]


def test_decode_drops_ctc_blank_and_specials(vocab):
    ids = vocab.encode("Der Mann hat den Hund gesehen.")
    noisy = [vocab.bos_id, vocab.blank_id] + ids[:2] + [vocab.blank_id] + ids[2:] + [vocab.eos_id, vocab.pad_id]
    assert vocab.decode(noisy) == "Der Mann hat den Hund gesehen."


def test_save_load(vocab, corpus, tmp_path):
    path = vocab.save(tmp_path / "vocab")
    assert path.name == "tokenizer.json"
    loaded = Vocab.load(tmp_path / "vocab")
    assert all(loaded.encode(p["de"]) == vocab.encode(p["de"]) for p in corpus[:50])
    with pytest.raises(FileNotFoundError):
        Vocab.load(tmp_path / "missing")


def test_appended_characters_get_canonical_ids_even_around_an_off_grid_piece():
    """The trainer appends alphabet characters with made-up scores (1e-4 apart, then a floor) in hash-set
    order; a real single-character piece can sit between them just off that grid (seen in a smoke run:
    'ß' 7e-7 above the floor). Two such orders must give one vocabulary. Fails if the canonical form
    only re-sorts a run of appended characters that ends at the floor without interruption."""
    import json

    from tokenizers import Tokenizer

    from pipelines.speech.vocab import _canonical

    floor = -8.273043258
    grid = [round(floor + k * 1e-4, 9) for k in range(6, 0, -1)] + [floor, floor, floor]
    def tokenizer(chars):
        vocab = [[s, 0.0] for s in SPECIALS] + [["▁the", -2.0], ["x", -7.273043258]]
        vocab += [[c, score] for c, score in zip(chars[:6], grid[:6])]
        vocab += [["ß", round(floor + 7.24e-7, 9)]] + [[c, floor] for c in chars[6:]]
        model = {"type": "Unigram", "unk_id": SPECIALS.index("<unk>"), "vocab": vocab, "byte_fallback": False}
        return Tokenizer.from_str(json.dumps({"version": "1.0", "truncation": None, "padding": None,
                                              "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
                                              "post_processor": None, "decoder": None, "model": model}))

    first = _canonical(tokenizer(list("TVFLÄjcOq"))).to_str()
    assert _canonical(tokenizer(list("qOcjÄLFVT"))).to_str() == first
    pieces = [p for p, _ in json.loads(first)["model"]["vocab"]]
    assert pieces[len(SPECIALS):] == ["▁the", "x", "F", "L", "O", "T", "V", "c", "ß", "j", "q", "Ä"]
