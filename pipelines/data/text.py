"""Reading user-supplied text files strictly: UTF-8 only, a byte-order mark allowed, lines bounded.

Python's own decoding error says `'utf-8' codec can't decode byte 0xe9 in position 14`, with no
file or line; these helpers say `FILE: line 3: not valid UTF-8 (byte 0xe9 at column 14)` instead.
A UTF-8 byte-order mark (which Windows editors and Excel write) is dropped rather than read as
part of the first field. Lines longer than `MAX_LINE_BYTES` are refused before they are held in
memory: a preference record is a few kB, so a longer line is a file that is not line-oriented
(a binary file, or a JSON array saved as .jsonl).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

MAX_LINE_BYTES = 8 * 1024 * 1024  # the longest line read: 8 MiB (long multi-turn transcripts are ~100 kB)
UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class TextFileError(ValueError):
    """A text file that cannot be read as UTF-8 lines; the message names the file and 1-based line."""

    def __init__(self, path: str | os.PathLike, line: int, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}: line {line}: {problem}")


def decode_utf8(data: bytes, path: str | os.PathLike, first_line: int = 1) -> str:
    """`data` as text; a leading BOM is dropped; bad bytes raise TextFileError with line and column."""
    if first_line == 1:
        if data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM):]
        elif data.startswith(_UTF16_BOMS):
            raise TextFileError(path, 1, "UTF-16 text (byte-order mark 0x"
                                f"{data[0]:02x} 0x{data[1]:02x}); save the file as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise TextFileError(path, line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column})") from None


def read_text(path: str | os.PathLike) -> str:
    """The whole file as UTF-8 text (BOM dropped), with errors naming the line."""
    return decode_utf8(Path(path).read_bytes(), path)


def iter_lines(path: str | os.PathLike, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line break) for each line, decoded strictly."""
    with open(path, "rb") as handle:
        line_no = 0
        while True:
            raw = handle.readline(max_line_bytes + 1)
            if not raw:
                return
            line_no += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise TextFileError(path, line_no, f"line longer than {max_line_bytes} bytes "
                                    "(is this a line-per-record file?)")
            yield line_no, decode_utf8(raw, path, first_line=line_no).rstrip("\r\n")
