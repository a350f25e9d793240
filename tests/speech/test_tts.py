import numpy as np
import pytest

from pipelines.speech import tts

TEXT = "Yesterday the old man saw the dog in the garden."


def test_speech_is_audible_and_plausibly_long():
    audio = tts.speak(TEXT, "en-us", rate=175)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) > 0.02
    seconds, words = len(audio) / tts.TARGET_RATE, len(TEXT.split())
    assert 0.15 * words < seconds < 0.8 * words


def test_voices_and_rates_differ():
    us = tts.speak(TEXT, "en-us", rate=175)
    scot = tts.speak(TEXT, "en-gb-scotland", rate=175)
    female = tts.speak(TEXT, "en-us+f4", rate=175)
    for other in (scot, female):
        n = min(len(us), len(other))
        assert len(us) != len(other) or np.abs(us[:n] - other[:n]).max() > 0.1
    fast, slow = tts.speak(TEXT, "en-us", rate=230), tts.speak(TEXT, "en-us", rate=120)
    assert len(fast) < 0.8 * len(slow)


def test_synthesize_is_deterministic_and_resampled():
    texts = ["The dog sleeps.", "A woman reads the book."]
    a = tts.synthesize(texts, seed=3)
    b = tts.synthesize(texts, seed=3)
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    raw = tts.SpeechSynthesizer.get().synthesize("The dog sleeps.", "en-us")
    assert raw.dtype == np.int16 and tts.SpeechSynthesizer.get().sample_rate == 22050
    assert abs(len(tts.to_16k(raw, 22050)) - len(raw) * 16000 / 22050) <= 1


def test_voice_listing_and_unknown_voice():
    engine = tts.SpeechSynthesizer.get()
    assert {"en-us", "en-gb-scotland"} <= set(engine.voices())
    with pytest.raises(ValueError, match="unknown espeak-ng voice 'xx-nope'"):
        engine.synthesize("hello", "xx-nope")


def test_clear_error_when_library_missing(monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    with pytest.raises(tts.TTSUnavailableError, match="espeakng-loader"):
        tts.SpeechSynthesizer()  # the constructor, not the cached process-wide instance
