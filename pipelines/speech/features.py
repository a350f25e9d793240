"""80-dim Kaldi log-mel filterbanks with utterance-level CMVN, cached per split.

Matches what fairseq's S2T MuST-C recipe feeds its models: the waveform is scaled to the int16
range, Kaldi fbank with 25 ms frames, 10 ms shift, no dither, snip_edges, povey window; then
each utterance is mean/variance normalised on its own. `kaldi-native-fbank` computes the fbank
(torchaudio has no wheel for this torch). All features of a split go into one safetensors
file (frames concatenated plus an offsets index) — no pickle, memory-mappable, one file for DVC.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import kaldi_native_fbank as knf
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

FORMAT = "alignflow-fbank-v1"


@dataclass(frozen=True)
class FbankConfig:
    num_mel_bins: int = 80
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    energy_floor: float = 1.0  # Kaldi/torchaudio default; only used if use_energy, set for clarity
    cmvn: bool = True

    def options(self) -> knf.FbankOptions:
        o = knf.FbankOptions()
        o.frame_opts.samp_freq = self.sample_rate
        o.frame_opts.frame_length_ms = self.frame_length_ms
        o.frame_opts.frame_shift_ms = self.frame_shift_ms
        o.frame_opts.dither = self.dither
        o.frame_opts.snip_edges = True
        o.frame_opts.window_type = "povey"
        o.frame_opts.preemph_coeff = 0.97
        o.frame_opts.remove_dc_offset = True
        o.mel_opts.num_bins = self.num_mel_bins
        o.mel_opts.low_freq = 20.0
        o.mel_opts.high_freq = 0.0  # Nyquist
        o.energy_floor = self.energy_floor
        o.use_energy = False
        o.use_log_fbank = True
        o.use_power = True
        return o


def num_frames(num_samples: int, config: FbankConfig = FbankConfig()) -> int:
    win = int(config.sample_rate * config.frame_length_ms / 1000)
    hop = int(config.sample_rate * config.frame_shift_ms / 1000)
    return 0 if num_samples < win else 1 + (num_samples - win) // hop


def fbank(waveform: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """(frames, num_mel_bins) float32 log-mel energies of a float waveform in [-1, 1]."""
    x = np.asarray(waveform, dtype=np.float32).reshape(-1) * 32768.0  # Kaldi expects int16 scale
    computer = knf.OnlineFbank(config.options())
    computer.accept_waveform(config.sample_rate, x)
    computer.input_finished()
    n = computer.num_frames_ready
    if n == 0:
        return np.zeros((0, config.num_mel_bins), np.float32)
    return np.stack([np.asarray(computer.get_frame(i), dtype=np.float32) for i in range(n)])


def utterance_cmvn(feats: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Per-utterance mean/variance normalisation (fairseq's UtteranceCMVN); NaN-free on silence."""
    if len(feats) == 0:
        return feats.astype(np.float32)
    x = feats.astype(np.float64)
    mean = x.mean(axis=0)
    std = np.sqrt(np.maximum(x.var(axis=0), eps))
    return ((x - mean) / std).astype(np.float32)


def compute_features(waveform: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    f = fbank(waveform, config)
    return utterance_cmvn(f) if config.cmvn else f


def extract_features(segments: Sequence, out_path: str | os.PathLike,
                     read_audio: Callable | None = None, config: FbankConfig = FbankConfig(),
                     progress: bool = True) -> Path:
    """Compute features for `segments` (objects with `.id`) into one safetensors file.

    `read_audio(segment)` defaults to `mustc.read_segment_audio`. The file is written to a
    temporary name and renamed, so an interrupted run leaves no truncated cache behind.
    """
    if read_audio is None:
        from pipelines.speech.mustc import read_segment_audio as read_audio
    ids = [str(s.id) for s in segments]
    if len(set(ids)) != len(ids):
        raise ValueError("segment ids must be unique")
    feats: list[np.ndarray] = []
    for seg in tqdm(segments, desc="fbank", file=sys.stderr, disable=not progress, mininterval=2.0):
        feats.append(compute_features(read_audio(seg), config))
    lengths = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.concatenate(feats) if feats else np.zeros((0, config.num_mel_bins), np.float32)
    # one metadata key: safetensors writes its metadata map in random key order
    meta = {"alignflow": json.dumps({"format": FORMAT, "config": asdict(config), "ids": ids}, sort_keys=True)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        tensors = {"features": np.ascontiguousarray(data, dtype=np.float32), "offsets": offsets}
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary shared file
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out_path


class FeatureCache:
    """Read access to an `extract_features` file; slices one utterance at a time from disk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = safe_open(str(self.path), framework="numpy")
        meta = json.loads((self._file.metadata() or {}).get("alignflow", "{}"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.path}: not a feature cache (format {meta.get('format')!r})")
        self.ids: list[str] = meta["ids"]
        self.config = FbankConfig(**meta["config"])
        self.offsets = self._file.get_tensor("offsets")
        self._index = {k: i for i, k in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def num_frames(self, key: str | int) -> int:
        i = self._index[key] if isinstance(key, str) else key
        return int(self.offsets[i + 1] - self.offsets[i])

    def __getitem__(self, key: str | int) -> np.ndarray:
        i = self._index[key] if isinstance(key, str) else key
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self._file.get_slice("features")[a:b]

    def items(self) -> Iterable[tuple[str, np.ndarray]]:
        return ((k, self[i]) for i, k in enumerate(self.ids))


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every utterance of a cache file as {segment id: (frames, bins) float32}."""
    return dict(FeatureCache(path).items())
