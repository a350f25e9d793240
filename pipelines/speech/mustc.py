"""Reading and writing the MuST-C directory layout.

    <root>/en-de/data/<split>/wav/<talk>.wav        16 kHz mono PCM, one file per talk
    <root>/en-de/data/<split>/txt/<split>.yaml      one {duration, offset, speaker_id, wav} per segment
    <root>/en-de/data/<split>/txt/<split>.en|.de    one line per segment, in yaml order

Using the real corpus layout means the same loader serves the synthetic corpus and real MuST-C.
Every layout problem raises `MustcLayoutError` naming the offending path (and entry, key or line
counts), because a silently misaligned transcript is far costlier than a crash. Problems with a
yaml entry also name its line and field. A `wav` value must stay inside `<split>/wav/` once
resolved (no `..`, no absolute path elsewhere, no symlink pointing out), so a segment list cannot
make the pipeline read arbitrary files. Text files are strict UTF-8 (a byte-order mark is dropped).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf
import yaml

from pipelines.data.text import TextFileError, read_text

SAMPLE_RATE = 16000
REQUIRED_KEYS = ("duration", "offset", "speaker_id", "wav")
# the C implementations when PyYAML has them: the real train yaml has ~230k entries
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class MustcLayoutError(ValueError):
    """A MuST-C root that does not match the expected layout; the message names the path."""


@dataclass(frozen=True)
class Segment:
    id: str  # "<talk>_<index within talk>", as fairseq names MuST-C segments
    wav_path: Path
    offset: float  # seconds
    duration: float  # seconds
    speaker: str
    en: str
    tgt: str  # target-language text (German for en-de)
    sample_rate: int = SAMPLE_RATE

    @property
    def de(self) -> str:
        return self.tgt

    @property
    def start(self) -> int:
        return round(self.offset * self.sample_rate)

    @property
    def frames(self) -> int:
        return round(self.duration * self.sample_rate)


@dataclass
class SegmentAudio:
    """Input to `write_mustc`: one utterance; consecutive segments of a talk share one wav."""

    audio: np.ndarray  # mono float32 in [-1, 1] (or int16) at 16 kHz
    en: str
    tgt: str
    speaker: str
    talk: str  # wav stem, e.g. "ted_1"


# ----------------------------------------------------------------------------- writing


def write_mustc(root: str | os.PathLike, splits: Mapping[str, Sequence[SegmentAudio]], lang: str = "de",
                gap_s: float = 0.4, edge_s: float = 0.2) -> Path:
    """Write `splits` under `<root>/en-<lang>` and return that directory.

    Everything is written to a temporary sibling first and renamed into place, so readers never
    see a half-written corpus; an existing `en-<lang>` directory is replaced.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"en-{lang}"
    tmp = Path(tempfile.mkdtemp(prefix=f".en-{lang}.tmp-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the corpus is an ordinary shared directory
    try:
        for split, segments in splits.items():
            _write_split(tmp / "data" / split, split, segments, lang, gap_s, edge_s)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".en-{lang}.old-", dir=root))
            final.rename(old / "x")
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _write_split(out: Path, split: str, segments: Sequence[SegmentAudio], lang: str, gap_s: float, edge_s: float):
    (out / "wav").mkdir(parents=True)
    (out / "txt").mkdir(parents=True)
    talks: dict[str, list[SegmentAudio]] = {}
    for i, seg in enumerate(segments):
        if talks and seg.talk in talks and seg.talk != next(reversed(talks)):
            raise ValueError(f"{split}: segment {i} of talk {seg.talk!r} is not next to the talk's other segments")
        if "\n" in seg.en or "\n" in seg.tgt:
            raise ValueError(f"{split}: segment {i} text contains a newline")
        talks.setdefault(seg.talk, []).append(seg)
    gap, edge = np.zeros(round(gap_s * SAMPLE_RATE), np.float32), np.zeros(round(edge_s * SAMPLE_RATE), np.float32)
    entries, en_lines, tgt_lines = [], [], []
    for talk, segs in talks.items():
        pieces, pos = [edge], len(edge)
        for k, seg in enumerate(segs):
            audio = _as_float(seg.audio)
            entries.append({"duration": round(len(audio) / SAMPLE_RATE, 6), "offset": round(pos / SAMPLE_RATE, 6),
                            "speaker_id": seg.speaker, "wav": f"{talk}.wav"})
            en_lines.append(seg.en)
            tgt_lines.append(seg.tgt)
            pieces += [audio, gap if k < len(segs) - 1 else edge]
            pos += len(audio) + len(pieces[-1])
        sf.write(out / "wav" / f"{talk}.wav", np.concatenate(pieces), SAMPLE_RATE, subtype="PCM_16")
    # flow-style entries, one per line, like the real MuST-C yaml
    text = yaml.dump(entries, Dumper=_Dumper, default_flow_style=None, width=1000)
    (out / "txt" / f"{split}.yaml").write_text(text, encoding="utf-8")
    (out / "txt" / f"{split}.en").write_text("".join(t + "\n" for t in en_lines), encoding="utf-8")
    (out / "txt" / f"{split}.{lang}").write_text("".join(t + "\n" for t in tgt_lines), encoding="utf-8")


def _as_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"segment audio must be mono 1-D, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return audio.astype(np.float32)


# ----------------------------------------------------------------------------- reading


def lang_dir(root: str | os.PathLike, lang: str = "de") -> Path:
    """`<root>/en-<lang>`, or `root` itself when it already is that directory."""
    root = Path(root)
    if not root.is_dir():
        raise MustcLayoutError(f"{root}: MuST-C root directory does not exist")
    if (root / f"en-{lang}" / "data").is_dir():
        return root / f"en-{lang}"
    if (root / "data").is_dir():
        return root
    raise MustcLayoutError(f"{root}: neither {root / f'en-{lang}' / 'data'} nor {root / 'data'} exists")


def load_mustc(root: str | os.PathLike, split: str, lang: str = "de") -> list[Segment]:
    """All segments of `split`, validated against the text files and the wav headers."""
    split_dir = lang_dir(root, lang) / "data" / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in split_dir.parent.iterdir() if p.is_dir())
        raise MustcLayoutError(f"{split_dir}: split directory does not exist (found splits: {have})")
    txt = split_dir / "txt"
    yaml_path = txt / f"{split}.yaml"
    entries = _read_yaml(yaml_path)
    en_path, tgt_path = txt / f"{split}.en", txt / f"{split}.{lang}"
    en, tgt = _read_lines(en_path), _read_lines(tgt_path)
    if not (len(en) == len(tgt) == len(entries)):
        raise MustcLayoutError(f"line counts differ: {en_path} has {len(en)}, {tgt_path} has {len(tgt)}, "
                               f"{txt / f'{split}.yaml'} has {len(entries)} entries")
    wav_frames: dict[str, int] = {}
    per_talk: dict[str, int] = {}
    segments = []
    wav_root = (split_dir / "wav").resolve()
    for i, e in enumerate(entries):
        wav = split_dir / "wav" / e["wav"]
        if e["wav"] not in wav_frames:
            resolved = wav.resolve()
            if not resolved.is_relative_to(wav_root):
                raise MustcLayoutError(f"{yaml_path}: line {_entry_line(yaml_path, i)}: entry {i}: field 'wav': "
                                       f"{e['wav']!r} resolves to {resolved}, outside {wav_root}")
            wav_frames[e["wav"]] = _check_wav(wav, i, yaml_path)
        seg = Segment(f"{wav.stem}_{per_talk.get(wav.stem, 0)}", wav, float(e["offset"]), float(e["duration"]),
                      str(e["speaker_id"]), en[i], tgt[i])
        per_talk[wav.stem] = per_talk.get(wav.stem, 0) + 1
        if seg.start + seg.frames > wav_frames[e["wav"]] + 1:  # one sample of slack for rounding
            raise MustcLayoutError(
                f"{wav}: yaml entry {i} ends at {seg.offset + seg.duration:.3f}s, beyond the end of the wav "
                f"({wav_frames[e['wav']] / SAMPLE_RATE:.3f}s)")
        segments.append(seg)
    return segments


def _strict_text(path: Path) -> str:
    try:
        return read_text(path)
    except TextFileError as e:
        raise MustcLayoutError(str(e)) from None


def _entry_line(path: Path, index: int) -> int | str:
    """1-based line of the index-th segment of a yaml list; composed again only when reporting an error."""
    try:
        node = yaml.compose(_strict_text(path), Loader=_Loader)
        return node.value[index].start_mark.line + 1
    except (yaml.YAMLError, AttributeError, IndexError, MustcLayoutError):
        return "?"


def _read_yaml(path: Path) -> list[dict]:
    if not path.is_file():
        raise MustcLayoutError(f"{path}: segment yaml does not exist")
    try:
        entries = yaml.load(_strict_text(path), Loader=_Loader)
    except yaml.YAMLError as e:
        raise MustcLayoutError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(entries, list):
        raise MustcLayoutError(f"{path}: expected a YAML list of segments, got {type(entries).__name__}")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise MustcLayoutError(f"{path}: line {_entry_line(path, i)}: entry {i} is not a mapping")
        for key in REQUIRED_KEYS:
            if key not in e:
                raise MustcLayoutError(f"{path}: line {_entry_line(path, i)}: entry {i} is missing key {key!r}")
        for key in ("duration", "offset"):
            value = e[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise MustcLayoutError(f"{path}: line {_entry_line(path, i)}: entry {i} has invalid {key} {value!r} "
                                       "(expected a finite number of seconds >= 0)")
        if not isinstance(e["wav"], str) or not e["wav"] or "\x00" in e["wav"]:
            raise MustcLayoutError(f"{path}: line {_entry_line(path, i)}: entry {i} has invalid wav {e['wav']!r} "
                                   "(expected a file name under the split's wav/ folder)")
    return entries


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MustcLayoutError(f"{path}: transcript file does not exist")
    # split on "\n" only: str.splitlines would also split on U+2028 and friends inside sentences
    lines = _strict_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _check_wav(path: Path, entry: int, yaml_path: Path) -> int:
    """Frames of a talk's wav; an error names the yaml file and line that referenced it.

    The line is found only when there is an error: composing the yaml for it is as slow as loading it,
    and doing that once per talk made loading quadratic in the number of talks (42 s for 2,200 segments)."""
    def where() -> str:
        return f"{yaml_path}: line {_entry_line(yaml_path, entry)}"

    if not path.is_file():
        raise MustcLayoutError(f"{path}: wav referenced by yaml entry {entry} ({where()}, field 'wav') does not exist")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise MustcLayoutError(f"{path}: unreadable audio, referenced by yaml entry {entry} ({where()}, "
                               f"field 'wav'): {e}") from e
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise MustcLayoutError(f"{path}: expected 16000 Hz mono, got {info.samplerate} Hz, {info.channels} channels "
                               f"(referenced by yaml entry {entry}, {where()}, field 'wav')")
    return info.frames


def read_segment_audio(segment: Segment) -> np.ndarray:
    """float32 samples of one segment, reading only its frames from the talk's wav."""
    audio, rate = sf.read(str(segment.wav_path), start=segment.start, frames=segment.frames,
                          dtype="float32", always_2d=False)
    if rate != segment.sample_rate:
        raise MustcLayoutError(f"{segment.wav_path}: sample rate {rate}, expected {segment.sample_rate}")
    return audio
