import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipelines.speech.mustc import (
    MustcLayoutError, SegmentAudio, load_mustc, read_segment_audio, write_mustc,
)

SR = 16000


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_splits():
    train = [
        SegmentAudio(tone(0.5, 200), "The man sleeps.", "Der Mann schläft.", "spk.a", "ted_1"),
        SegmentAudio(tone(0.7, 300), "Yesterday the man saw the dog.", "Gestern sah der Mann den Hund.",
                     "spk.a", "ted_1"),
        SegmentAudio(tone(0.3, 400), "It rains.", "Es regnet.", "spk.b", "ted_2"),
    ]
    pcm16 = (tone(0.4, 500) * 32767).astype(np.int16)
    dev = [SegmentAudio(pcm16, "The dog eats.", "Der Hund frisst.", "spk.c", "ted_3")]
    return {"train": train, "dev": dev}


@pytest.fixture
def corpus(tmp_path):
    write_mustc(tmp_path, make_splits())
    return tmp_path


def split_dir(root: Path, split: str = "train") -> Path:
    return root / "en-de" / "data" / split


def test_round_trip(corpus):
    segs = load_mustc(corpus, "train")
    splits = make_splits()
    assert [s.id for s in segs] == ["ted_1_0", "ted_1_1", "ted_2_0"]
    assert [s.en for s in segs] == [x.en for x in splits["train"]]
    assert [s.de for s in segs] == [x.tgt for x in splits["train"]]
    assert [s.speaker for s in segs] == ["spk.a", "spk.a", "spk.b"]
    assert segs[0].offset == pytest.approx(0.2) and segs[1].offset == pytest.approx(0.2 + 0.5 + 0.4)
    for seg, src in zip(segs, splits["train"]):
        audio = read_segment_audio(seg)
        assert audio.dtype == np.float32 and len(audio) == len(src.audio)
        assert np.abs(audio - src.audio).max() < 2 / 32768  # 16-bit PCM quantisation
    dev = load_mustc(corpus, "dev")
    assert len(dev) == 1 and np.abs(read_segment_audio(dev[0]) - tone(0.4, 500)).max() < 3 / 32768
    info = sf.info(str(split_dir(corpus) / "wav" / "ted_1.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")


def test_real_mustc_format(corpus):
    txt = split_dir(corpus) / "txt"
    first = (txt / "train.yaml").read_text().splitlines()[0]
    assert re.fullmatch(r"- \{duration: [\d.]+, offset: [\d.]+, speaker_id: spk\.a, wav: ted_1\.wav\}", first)
    assert (txt / "train.de").read_text(encoding="utf-8").splitlines()[1] == "Gestern sah der Mann den Hund."


def test_accepts_lang_dir_and_overwrites_atomically(corpus):
    assert len(load_mustc(corpus / "en-de", "dev")) == 1
    write_mustc(corpus, {"dev": make_splits()["dev"] * 2})
    assert len(load_mustc(corpus, "dev")) == 2
    assert not (split_dir(corpus)).exists()  # the old tree was replaced, not merged
    assert sorted(p.name for p in corpus.iterdir()) == ["en-de"]  # no temp dirs left behind


def test_writer_rejects_scattered_talks(tmp_path):
    s = make_splits()["train"]
    with pytest.raises(ValueError, match="not next to"):
        write_mustc(tmp_path, {"train": [s[0], s[2], s[1]]})
    assert not (tmp_path / "en-de").exists()


def _yaml(corpus):
    path = split_dir(corpus) / "txt" / "train.yaml"
    return path, yaml.safe_load(path.read_text())


def _expect(path, *fragments):
    pattern = re.escape(str(path)) + ".*" + ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(MustcLayoutError, match=pattern)


def test_missing_root_and_split(tmp_path, corpus):
    with _expect(tmp_path / "nope", "does not exist"):
        load_mustc(tmp_path / "nope", "train")
    with _expect(split_dir(corpus, "tst-COMMON"), "found splits: ['dev', 'train']"):
        load_mustc(corpus, "tst-COMMON")
    empty = tmp_path / "empty"
    empty.mkdir()
    with _expect(empty, "en-de"):
        load_mustc(empty, "train")


def test_missing_yaml(corpus):
    path, _ = _yaml(corpus)
    path.unlink()
    with _expect(path, "does not exist"):
        load_mustc(corpus, "train")


def test_yaml_not_a_list(corpus):
    path, _ = _yaml(corpus)
    path.write_text("duration: 1.0\n")
    with _expect(path, "expected a YAML list"):
        load_mustc(corpus, "train")


def test_missing_key(corpus):
    path, entries = _yaml(corpus)
    del entries[1]["wav"]
    path.write_text(yaml.safe_dump(entries))
    with _expect(path, "entry 1", "'wav'"):
        load_mustc(corpus, "train")


def test_line_count_mismatch(corpus):
    txt = split_dir(corpus) / "txt"
    (txt / "train.de").write_text("Der Mann schläft.\nGestern sah der Mann den Hund.\n", encoding="utf-8")
    with _expect(txt / "train.en", "3", str(txt / "train.de"), "2", str(txt / "train.yaml"), "3 entries"):
        load_mustc(corpus, "train")


def test_missing_wav(corpus):
    wav = split_dir(corpus) / "wav" / "ted_2.wav"
    wav.unlink()
    with _expect(wav, "yaml entry 2", "does not exist"):
        load_mustc(corpus, "train")


def test_missing_wav_names_the_yaml_line(corpus):
    path, entries = _yaml(corpus)
    path.write_text(_flow_yaml(entries))
    wav = split_dir(corpus) / "wav" / "ted_2.wav"
    wav.unlink()
    with _expect(wav, "yaml entry 2", f"{path}: line 3", "does not exist"):
        load_mustc(corpus, "train")


def test_valid_corpus_loads_without_composing_the_yaml(corpus, monkeypatch):
    """The yaml is composed (as slowly as it is loaded) only to name the line of an error: once per talk
    made loading quadratic, 42 s for the default 2,200 segments."""
    def compose(*args, **kwargs):
        raise AssertionError("yaml composed while loading a valid corpus")

    monkeypatch.setattr(yaml, "compose", compose)
    assert len(load_mustc(corpus, "train")) == 3


def test_segment_beyond_end_of_wav(corpus):
    path, entries = _yaml(corpus)
    entries[2]["duration"] = 5.0
    path.write_text(yaml.safe_dump(entries))
    with _expect(split_dir(corpus) / "wav" / "ted_2.wav", "entry 2", "beyond the end"):
        load_mustc(corpus, "train")


def test_wrong_sample_rate(corpus):
    wav = split_dir(corpus) / "wav" / "ted_2.wav"
    sf.write(str(wav), np.zeros(8000, np.float32), 8000, subtype="PCM_16")
    with _expect(wav, "expected 16000 Hz mono, got 8000 Hz"):
        load_mustc(corpus, "train")


# ---------------------------------------------------------------- paths that escape, bytes that are not text

def _flow_yaml(entries) -> str:
    """One flow-style entry per line, like the real MuST-C yaml (entry i is on line i + 1)."""
    return yaml.safe_dump(entries, default_flow_style=None, width=1000)


@pytest.mark.parametrize("wav", ["../../../../../../etc/hostname", "../txt/train.en", "/etc/hostname"])
def test_wav_paths_escaping_the_wav_folder_are_refused(corpus, wav):
    """A `wav` that resolves outside <split>/wav/ is refused naming the yaml file, line, entry and field,
    before the file is opened. Breaks if `..` or an absolute path is joined and read."""
    path, entries = _yaml(corpus)
    entries[2]["wav"] = wav
    path.write_text(_flow_yaml(entries))
    with _expect(path, "line 3: entry 2: field 'wav'", repr(wav), "outside", str(split_dir(corpus) / "wav")):
        load_mustc(corpus, "train")


def test_wav_symlink_pointing_out_is_refused(corpus, tmp_path_factory):
    """A symlink in wav/ resolving elsewhere is an escape; the wav folder itself being a symlink is not.
    Breaks if containment is checked on the unresolved path (or on the unresolved folder)."""
    path, entries = _yaml(corpus)
    wav_dir = split_dir(corpus) / "wav"
    outside = tmp_path_factory.mktemp("elsewhere")
    (wav_dir / "ted_2.wav").rename(outside / "ted_2.wav")
    (wav_dir / "ted_2.wav").symlink_to(outside / "ted_2.wav")
    with _expect(path, "line ", "entry 2: field 'wav'", "outside"):
        load_mustc(corpus, "train")
    (wav_dir / "ted_2.wav").unlink()
    (outside / "ted_2.wav").rename(wav_dir / "ted_2.wav")
    moved = tmp_path_factory.mktemp("storage") / "wav"
    wav_dir.rename(moved)
    wav_dir.symlink_to(moved)
    assert len(load_mustc(corpus, "train")) == 3


@pytest.mark.parametrize("key, value", [("duration", float("nan")), ("offset", float("inf")), ("duration", True),
                                        ("wav", 7)])
def test_bad_entry_values_name_line_and_key(corpus, key, value):
    """NaN passed the old `< 0` check (NaN < 0 is False); a bool is an int to Python. Breaks if any of these
    loads, or the error loses the yaml line."""
    path, entries = _yaml(corpus)
    entries[1][key] = value
    path.write_text(_flow_yaml(entries))
    with _expect(path, "line 2: entry 1 has invalid", key):
        load_mustc(corpus, "train")


def test_transcripts_are_strict_utf8_and_a_bom_is_dropped(corpus):
    """A latin-1 byte in train.de names file, line and column; a BOM on train.en is not glued to the first
    sentence. Breaks if transcripts are decoded leniently or the BOM survives."""
    txt = split_dir(corpus) / "txt"
    en = txt / "train.en"
    en.write_bytes(b"\xef\xbb\xbf" + en.read_bytes())
    assert load_mustc(corpus, "train")[0].en == "The man sleeps."
    de = txt / "train.de"
    de.write_bytes(de.read_bytes().replace("schläft".encode(), "schl\xe4ft".encode("latin-1")))
    with _expect(de, "line 1: not valid UTF-8 (byte 0xe4 at column 14)"):
        load_mustc(corpus, "train")
