"""Text-to-speech with espeak-ng (from the `espeakng-loader` wheel) through ctypes.

espeak-ng is a formant synthesiser: robotic, but real speech, about 1000x faster than real time
on one core, deterministic, and installable from PyPI with its voice data, so the speech corpus
can be built offline in seconds. Several voices, variants, rates and pitches give speaker variety.

libespeak-ng keeps its state (current voice, parameters, callback) in process-global variables
and is not thread-safe. This module initialises it once per process and serialises every
synthesis call with a lock; worker processes each get their own copy of the library.

Determinism: the waveform of one utterance depends on what the process synthesised before
(espeak-ng's pitch "flutter" index is a function-static counter that is never reset), but a
fresh process given the same jobs in the same order produces identical audio. `synthesize`
therefore runs its batch in a new Python process. The f2/f3 voice variants add breath noise
that differs even between fresh processes, so the default voices avoid them.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import resample_poly

TARGET_RATE = 16000
DEFAULT_VOICES = ("en-us", "en-us+f4", "en", "en+m3", "en-gb-scotland", "en-gb-x-rp+f1", "en-029", "en-us-nyc")
DEFAULT_RATES = (140, 165, 190)  # words per minute
DEFAULT_PITCHES = (35, 50, 65)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3  # espeak_PARAMETER values

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class TTSUnavailableError(RuntimeError):
    """libespeak-ng (or its voice data) could not be loaded or initialised."""


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class SpeechSynthesizer:
    """The process-wide espeak-ng engine; get it with `SpeechSynthesizer.get()`."""

    _instance: "SpeechSynthesizer | None" = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> "SpeechSynthesizer":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (ImportError, OSError, RuntimeError) as e:
            raise TTSUnavailableError(
                f"cannot load libespeak-ng ({e}); install it with `pip install espeakng-loader`") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise TTSUnavailableError(f"espeak_Initialize failed (returned {rate}) with data path {data}")
        self.lib, self.sample_rate = lib, rate
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, _events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def voices(self, language: str = "en") -> list[str]:
        """Installed voice languages (usable as names), e.g. en-us, en-gb-scotland."""
        out, ptr, i = [], self.lib.espeak_ListVoices(None), 0
        while ptr[i]:
            lang = ptr[i].contents.languages[1:].split(b"\0")[0].decode()  # first byte is a priority
            if lang.split("-")[0] == language:
                out.append(lang)
            i += 1
        return sorted(set(out))

    def synthesize(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
        """int16 samples at `self.sample_rate` (22050 Hz) for one utterance."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"unknown espeak-ng voice {voice!r}; English voices: {self.voices()}")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks = []
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with error {err} for {text!r}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 at `rate` -> float32 in [-1, 1] at 16 kHz (polyphase resampling)."""
    x = samples.astype(np.float32) / 32768.0
    if rate != TARGET_RATE:
        k = gcd(rate, TARGET_RATE)
        x = resample_poly(x, TARGET_RATE // k, rate // k).astype(np.float32)
    return np.clip(x, -1.0, 1.0)


def trim_silence(x: np.ndarray, threshold: float = 1e-3, margin: int = 800) -> np.ndarray:
    """Cut espeak's leading/trailing silence down to `margin` samples (50 ms at 16 kHz)."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if loud.size == 0:
        return x
    return x[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def speak(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """One utterance as float32 at 16 kHz, silence trimmed (in this process; see module doc)."""
    tts = SpeechSynthesizer.get()
    return trim_silence(to_16k(tts.synthesize(text, voice, rate, pitch), tts.sample_rate))


Job = tuple[str, str, int, int]  # text, voice, rate, pitch


def speak_batch(jobs: Sequence[Job], progress: bool = False) -> list[np.ndarray]:
    """`speak` every job in a fresh Python process, so the audio depends on the jobs only."""
    from safetensors.numpy import load_file

    root = str(Path(__file__).resolve().parents[2])  # makes `pipelines` importable in the child
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        spec, out = Path(tmp) / "jobs.json", Path(tmp) / "audio.safetensors"
        spec.write_text(json.dumps({"jobs": [list(j) for j in jobs], "progress": progress}), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "pipelines.speech.tts", str(spec), str(out)], env=env, check=True)
        arrays = load_file(str(out))
    audio, offsets = arrays["audio"], arrays["offsets"]
    return [audio[offsets[i]:offsets[i + 1]].copy() for i in range(len(jobs))]


def synthesize(texts: Sequence[str], voices: Sequence[str] = DEFAULT_VOICES,
               rates: Sequence[int] = DEFAULT_RATES, seed: int = 0,
               pitches: Sequence[int] = DEFAULT_PITCHES, progress: bool = False) -> list[np.ndarray]:
    """float32 16 kHz audio per text, each with a voice/rate/pitch drawn from a seeded RNG."""
    rng = random.Random(seed)
    jobs = [(t, rng.choice(voices), rng.choice(rates), rng.choice(pitches)) for t in texts]
    return speak_batch(jobs, progress)


def _batch_main(spec_path: str, out_path: str) -> None:
    from safetensors.numpy import save_file
    from tqdm import tqdm

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    bar = tqdm(spec["jobs"], desc="tts", file=sys.stderr, disable=not spec["progress"], mininterval=2.0)
    audio = [speak(*job) for job in bar]
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in audio])]).astype(np.int64)
    flat = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    save_file({"audio": flat.astype(np.float32), "offsets": offsets}, out_path)


if __name__ == "__main__":
    _batch_main(sys.argv[1], sys.argv[2])
