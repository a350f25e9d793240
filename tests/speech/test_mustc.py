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
