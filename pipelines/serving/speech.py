"""Speech translation from the NAST and autoregressive models: audio in, target-language text out.

Request: `audio` (a path to any file soundfile reads, mixed down to mono) or `samples` (a float
waveform in [-1, 1]) at `sample_rate` (default 16 kHz; resampled otherwise). Features are the
ones the `speech_features` stage computes (80-bin log-mel fbank, utterance CMVN); decoding is each
model's headline one (NAST: CTC greedy; AR: beam search).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.serving import Column, Family, register, text

RATE = 16000


def waveform(row: dict) -> np.ndarray:
    """The request's mono float32 waveform at 16 kHz."""
    path, samples = text(row, "audio", required=False), row.get("samples")
    if path:
        import soundfile as sf

        data, rate = sf.read(path, dtype="float32", always_2d=True)
        x = data.mean(axis=1)
    elif samples is not None and not (isinstance(samples, float) and np.isnan(samples)):
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        rate = row.get("sample_rate")
        rate = RATE if rate is None or (isinstance(rate, float) and np.isnan(rate)) else int(rate)
    else:
        raise ValueError("request row needs 'audio' (a file path) or 'samples' (a waveform)")
    if rate != RATE:
        from math import gcd

        from scipy.signal import resample_poly

        k = gcd(int(rate), RATE)
        x = resample_poly(x, RATE // k, int(rate) // k).astype(np.float32)
    return x


class SpeechPredictor:
    def __init__(self, model_dir: Path):
        from pipelines.speech.models import load_model
        from pipelines.speech.vocab import Vocab

        self.model, self.vocab = load_model(model_dir), Vocab.load(model_dir)

    def predict(self, rows, params) -> list[dict]:
        from pipelines.speech import evaluation as ev
        from pipelines.speech.features import compute_features
        from pipelines.speech.scoring import MAIN_DECODING

        feats = [compute_features(waveform(r)) for r in rows]
        decode = ev.decoders(self.model, beam_size=int(params["beam_size"]))[MAIN_DECODING[self.model.kind]]
        ids = ev.decode(decode, feats, batch_size=int(params["batch_size"]))
        return [{"translation": self.vocab.decode(i)} for i in ids]


def example(_model_dir: Path) -> list[dict]:
    """Half a second of a 220 Hz tone with a little noise: a request of the right shape, not speech."""
    t = np.arange(RATE // 2) / RATE
    noise = np.random.default_rng(0).normal(0, 0.01, t.size)
    return [{"samples": np.round(0.3 * np.sin(2 * np.pi * 220 * t) + noise, 4).tolist(), "sample_rate": RATE}]


register(Family("speech", SpeechPredictor,
                (Column("audio", "string", False), Column("samples", "double_array", False),
                 Column("sample_rate", "long", False)),
                (Column("translation", "string"),), example,
                "from pipelines.speech.models import load_model; from pipelines.speech.vocab import Vocab; "
                "model, vocab = load_model('{path}'), Vocab.load('{path}')",
                params={"beam_size": 5, "batch_size": 16}, requirements=("soundfile", "kaldi-native-fbank", "scipy")))
