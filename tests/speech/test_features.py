import json
import struct
from dataclasses import dataclass

import numpy as np
import pytest

from pipelines.speech.features import (
    FbankConfig, FeatureCache, compute_features, extract_features, fbank, load_features, num_frames,
)

SR = 16000


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 23457])
def test_frame_count_is_kaldi_snip_edges(n):
    expected = 1 + (n - 400) // 160
    assert num_frames(n) == expected
    assert compute_features(noise(n)).shape == (expected, 80)


def test_too_short_gives_empty():
    assert fbank(noise(399)).shape == (0, 80)
    assert compute_features(noise(100)).shape == (0, 80)


def test_cmvn_and_dtype():
    f = compute_features(noise(32000))
    assert f.dtype == np.float32
    np.testing.assert_allclose(f.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(f.std(axis=0), 1, atol=1e-3)


def test_deterministic():
    x = noise(20000, seed=3)
    assert np.array_equal(compute_features(x), compute_features(x.copy()))


def test_silence_has_no_nan():
    raw = fbank(np.zeros(16000, np.float32))
    assert np.isfinite(raw).all()
    f = compute_features(np.zeros(16000, np.float32))
    assert np.isfinite(f).all() and np.abs(f).max() == 0


def test_tone_peaks_at_its_mel_bin():
    """A 1 kHz tone must light up the mel bin centred nearest 1 kHz (Kaldi mel scale, 20 Hz - 8 kHz)."""
    t = np.arange(SR) / SR
    raw = fbank((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    centres = np.linspace(mel(20), mel(8000), 82)[1:-1]
    assert abs(int(raw.mean(axis=0).argmax()) - int(np.abs(centres - mel(1000)).argmin())) <= 1


def test_int16_scaling_and_power_spectrum():
    """Features are computed on the int16 scale: doubling the amplitude adds log(4) everywhere."""
    x = noise(16000)
    np.testing.assert_allclose(fbank(2 * x) - fbank(x), np.log(4), atol=1e-3)
    assert fbank(x).mean() > 5  # int16-scale energies, not [-1, 1]


@dataclass
class Seg:
    id: str
    audio: np.ndarray


def test_cache_round_trip(tmp_path):
    segs = [Seg(f"ted_1_{i}", noise(4000 + 1600 * i, seed=i)) for i in range(4)]
    path = extract_features(segs, tmp_path / "dev.safetensors", read_audio=lambda s: s.audio, progress=False)
    cache = FeatureCache(path)
    assert len(cache) == 4 and cache.ids == [s.id for s in segs]
    assert cache.config == FbankConfig()
    for i, s in enumerate(segs):
        expected = compute_features(s.audio)
        assert cache.num_frames(s.id) == len(expected)
        assert np.array_equal(cache[s.id], expected) and np.array_equal(cache[i], expected)
    assert set(load_features(path)) == {s.id for s in segs}
    # plain safetensors: 8-byte header length + JSON header, no pickle anywhere
    raw = path.read_bytes()
    header = json.loads(raw[8: 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["features"]["dtype"] == "F32" and header["offsets"]["shape"] == [5]
    again = extract_features(segs, tmp_path / "again.safetensors", read_audio=lambda s: s.audio, progress=False)
    assert again.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_cache_from_mustc_segments(tmp_path):
    from pipelines.speech.mustc import SegmentAudio, load_mustc, write_mustc

    segs = [SegmentAudio(noise(8000, i), "a b c d", "a b c d", "spk", "ted_1") for i in range(2)]
    write_mustc(tmp_path, {"dev": segs})
    segs = load_mustc(tmp_path, "dev")
    cache = FeatureCache(extract_features(segs, tmp_path / "dev.safetensors", progress=False))
    assert [cache.num_frames(s.id) for s in segs] == [num_frames(8000)] * 2


def test_rejects_foreign_file(tmp_path):
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a feature cache"):
        FeatureCache(tmp_path / "x.safetensors")
