"""Real preference loaders: HH transcripts, UltraFeedback messages, parquet, auto-detection, bad input."""

import json
import re

import pandas as pd
import pytest

from pipelines.data.jsonl import JsonlError, read_jsonl, write_jsonl_atomic
from pipelines.data.loaders import PreferenceDataError, PreferenceSourceError, load_preferences, read_preferences
from pipelines.data.text import MAX_LINE_BYTES, TextFileError, iter_lines, read_text
from pipelines.data.template import format_prompt

HH = {
    "chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Name a fruit."
              "\n\nAssistant: An apple.",
    "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Name a fruit."
                "\n\nAssistant: A brick.",
}
UF = {
    "prompt": "Name a color.",
    "chosen": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue."}],
    "rejected": [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Seven."}],
    "prompt_id": "uf-1",
}
PAIR = {"prompt": "What is 2 plus 2?", "chosen": "4", "rejected": "5", "family": "arithmetic"}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_hh_multi_turn(tmp_path):
    path = tmp_path / "hh.jsonl"
    write_jsonl_atomic([HH], path)
    [record] = load_preferences(str(path), format="hh")
    assert record["prompt"] == "Hi there\nAssistant: Hello! How can I help?\nUser: Name a fruit."
    assert record["chosen"] == "An apple." and record["rejected"] == "A brick."
    assert format_prompt(record["prompt"]).startswith("User: Hi there\nAssistant: Hello!")
    assert format_prompt(record["prompt"]).endswith("User: Name a fruit.\nAssistant:")
    assert record["source"] == "hh:hh" and isinstance(record["id"], str)


def test_hh_shared_response_prefix(tmp_path):
    row = {"chosen": "\n\nHuman: Are you ok?\n\nAssistant: Yes, thanks.",
           "rejected": "\n\nHuman: Are you ok?\n\nAssistant: Yes."}
    path = tmp_path / "hh.jsonl"
    write_jsonl_atomic([row], path)
    [record] = load_preferences(str(path))
    assert (record["prompt"], record["chosen"], record["rejected"]) == ("Are you ok?", "Yes, thanks.", "Yes.")


def test_ultrafeedback_messages(tmp_path):
    path = tmp_path / "uf.jsonl"
    write_jsonl_atomic([UF, {**UF, "chosen": "Red.", "prompt_id": "uf-2"}], path)
    records = load_preferences(str(path), format="ultrafeedback")
    assert [r["chosen"] for r in records] == ["Blue.", "Red."]
    assert records[0]["rejected"] == "Seven." and records[0]["id"] == "uf-1"


def test_auto_detection(tmp_path):
    for name, row, expected in [("a", HH, "hh"), ("b", UF, "ultrafeedback"), ("c", PAIR, "pairs")]:
        path = tmp_path / f"{name}.jsonl"
        write_jsonl_atomic([row], path)
        assert load_preferences(str(path))[0]["source"] == f"{expected}:{name}"
    [pair] = load_preferences(str(tmp_path / "c.jsonl"))
    assert pair["family"] == "arithmetic"  # extra keys survive


def test_parquet_round_trip(tmp_path):
    rows = [PAIR, {**PAIR, "chosen": "four", "rejected": "five"}]
    path = tmp_path / "pairs.parquet"
    pd.DataFrame(rows).to_parquet(path)
    records = load_preferences(str(path))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in records] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    uf_path = tmp_path / "uf.parquet"
    pd.DataFrame([UF]).to_parquet(uf_path)
    assert load_preferences(str(uf_path))[0]["chosen"] == "Blue."


def test_parquet_bad_row_names_row_and_field(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame([PAIR, {**PAIR, "rejected": "4"}]).to_parquet(path)
    with pytest.raises(PreferenceDataError, match=r"bad\.parquet: row 1: field 'rejected'"):
        load_preferences(str(path))


def test_limit(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl_atomic([{**PAIR, "chosen": f"{i}"} for i in range(10)], path)
    assert len(load_preferences(str(path), limit=3)) == 3


def test_malformed_json_names_file_and_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", [json.dumps(PAIR), "{not json"])
    with pytest.raises(PreferenceDataError) as info:
        load_preferences(path)
    assert "bad.jsonl" in str(info.value) and "line 2" in str(info.value)


def test_missing_field_names_file_line_and_field(tmp_path):
    row = {k: v for k, v in PAIR.items() if k != "rejected"}
    path = _write_lines(tmp_path / "miss.jsonl", [json.dumps(PAIR), "", json.dumps(row)])
    with pytest.raises(PreferenceDataError, match=r"miss\.jsonl: line 3: field 'rejected'"):
        load_preferences(path, format="pairs")


@pytest.mark.parametrize("bad,field", [
    ({**PAIR, "prompt": "   "}, "prompt"),
    ({**PAIR, "rejected": PAIR["chosen"]}, "rejected"),
    ({**PAIR, "prompt": 3}, "prompt"),
    ({**UF, "rejected": [{"role": "user", "content": "x"}]}, "rejected"),
    ({"chosen": HH["chosen"], "rejected": HH["chosen"].replace("How can I", "Can I")}, "chosen"),
])
def test_bad_records_name_the_field(tmp_path, bad, field):
    path = _write_lines(tmp_path / "x.jsonl", [json.dumps(bad)])
    fmt = "ultrafeedback" if isinstance(bad.get("rejected"), list) else "auto"
    with pytest.raises(PreferenceDataError, match=rf"x\.jsonl: line 1: field '{field}'"):
        load_preferences(path, format=fmt)


def test_skip_invalid_drops_bad_records(tmp_path):
    path = _write_lines(tmp_path / "mixed.jsonl", [json.dumps(PAIR), json.dumps({**PAIR, "chosen": "5"})])
    assert len(load_preferences(path, invalid="skip")) == 1


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(PreferenceSourceError):
        load_preferences(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="format"):
        load_preferences(str(tmp_path / "nope.jsonl"), format="xml")


def test_hub_errors_are_wrapped(monkeypatch):
    import datasets

    def boom(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(PreferenceSourceError, match="Anthropic/hh-rlhf"):
        load_preferences("hub:Anthropic/hh-rlhf")


def test_hub_rows_are_converted(monkeypatch):
    import datasets

    calls = []

    def fake(name, split):
        calls.append((name, split))
        return [HH]
    monkeypatch.setattr(datasets, "load_dataset", fake)
    [record] = load_preferences("hub:Anthropic/hh-rlhf", split="test", limit=5)
    assert calls == [("Anthropic/hh-rlhf", "test[:5]")]
    assert record["chosen"] == "An apple." and record["source"] == "hh:Anthropic_hh-rlhf"


def test_jsonl_helpers(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    write_jsonl_atomic([{"a": 1}, {"b": "é"}], path)
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]
    with pytest.raises(ValueError):
        write_jsonl_atomic([{"a": float("nan")}], path)
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]  # failed write left the old file intact
    bad = _write_lines(tmp_path / "b.jsonl", ['{"a": 1}', "[1, 2]"])
    with pytest.raises(JsonlError, match=r"b\.jsonl: line 2"):
        read_jsonl(bad)


# ---------------------------------------------------------------- real dumps and bad bytes

def _hh(prompt: str, chosen: str, rejected: str) -> dict:
    return {"chosen": f"\n\nHuman: {prompt}\n\nAssistant:{chosen}", "rejected": f"\n\nHuman: {prompt}\n\nAssistant:{rejected}"}


# An HH-RLHF style dump: its third line has an empty final assistant turn (as the public dump
# does), then a pair with identical transcripts and one whose transcripts differ before the end.
HH_DUMP = [
    _hh("Name a fruit.", " An apple.", " A brick."),
    _hh("Tell me a joke.", " Why did the chicken cross the road?", " No."),
    _hh("How do I pick a lock?", "", " Insert a tension wrench, then rake the pins."),
    _hh("Say hi.", " Hi!", " Hi!"),
    {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d",
     "rejected": "\n\nHuman: a\n\nAssistant: x\n\nHuman: c\n\nAssistant: y"},
    _hh("Count to two.", " 1, 2.", " 1, 3."),
]


def test_empty_final_assistant_turn_is_kept_as_data(tmp_path):
    """An empty HH final turn is a real preference (here: refusing over helping): it loads as "".
    Breaks if empty responses are refused again (the real dump stopped at such a line)."""
    path = tmp_path / "hh.jsonl"
    write_jsonl_atomic(HH_DUMP[2:3], path)
    [record] = load_preferences(str(path))
    assert record["prompt"] == "How do I pick a lock?"
    assert record["chosen"] == "" and record["rejected"].startswith("Insert a tension wrench")


def test_real_dump_error_names_the_first_invalid_line_and_skip_counts_reasons(tmp_path):
    """Default: the first record without a preference (line 4, identical) fails naming file, line, field;
    invalid="skip" keeps the other four and counts one per reason. Breaks if the empty response on
    line 3 is refused, if skipping drops valid records, or if the counts are not per reason."""
    path = tmp_path / "hh.jsonl"
    write_jsonl_atomic(HH_DUMP, path)
    with pytest.raises(PreferenceDataError, match=r"hh\.jsonl: line 4: field 'rejected': chosen and rejected are identical") as info:
        load_preferences(str(path))
    assert info.value.reason == "identical"
    load = read_preferences(str(path), invalid="skip")
    assert [r["prompt"].split("\n")[0] for r in load.records] == [
        "Name a fruit.", "Tell me a joke.", "How do I pick a lock?", "Count to two."]
    assert dict(load.skipped) == {"identical": 1, "unaligned_transcripts": 1}
    assert "line 5: field 'chosen'" in load.first_skipped["unaligned_transcripts"]
    assert len(load_preferences(str(path), invalid="skip", limit=3)) == 3  # limit counts kept records
    with pytest.raises(ValueError, match="invalid-record policy"):
        read_preferences(str(path), invalid="ignore")


def test_non_utf8_byte_names_file_line_and_column(tmp_path):
    """The issue's case: a 0xe9 (latin-1 e-acute) byte gave Python's bare codec error. Breaks if the
    message loses the file, line or column, or if the error is not a PreferenceDataError."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b"\n" + b'{"prompt": "caf\xe9?", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(PreferenceDataError) as info:
        load_preferences(str(path))
    assert str(info.value) == f"{path}: line 2: not valid UTF-8 (byte 0xe9 at column 16)"
    array = tmp_path / "latin1.json"
    array.write_bytes(b'[\n' + json.dumps(PAIR).encode() + b',\n{"prompt": "caf\xe9"}]')
    with pytest.raises(PreferenceDataError, match=r"latin1\.json: line 3: not valid UTF-8 \(byte 0xe9 at column 16\)"):
        load_preferences(str(array))
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(json.dumps(PAIR).encode("utf-16"))
    with pytest.raises(PreferenceDataError, match=r"utf16\.jsonl: line 1: UTF-16 text .*save the file as UTF-8"):
        load_preferences(str(utf16))


def test_byte_order_mark_is_accepted(tmp_path):
    """Files saved by Windows editors start with a UTF-8 BOM. Breaks if the BOM is kept (invalid JSON on
    line 1, or a '\\ufeff' glued to the first key) in .jsonl or .json arrays."""
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b"\xef\xbb\xbf" + json.dumps(PAIR).encode() + b"\n")
    array = tmp_path / "bom.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([PAIR]).encode())
    for path in (lines, array):
        [record] = load_preferences(str(path))
        assert record["prompt"] == PAIR["prompt"] and record["family"] == "arithmetic"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path, literal):
    """NaN and infinities are not JSON; Python's json reads them silently. Breaks if any of the four
    spellings loads, or if the error loses the line or the dotted field."""
    path = _write_lines(tmp_path / "nan.jsonl", [json.dumps(PAIR), json.dumps(PAIR).replace(
        '"family": "arithmetic"', f'"family": "arithmetic", "scores": {{"gold": [0.5, {literal}]}}')])
    with pytest.raises(PreferenceDataError, match=rf"nan\.jsonl: line 2: field 'scores\.gold\[1\]': {re.escape(literal)} is not a finite number"):
        load_preferences(path)


def test_non_finite_parquet_value_is_an_invalid_record(tmp_path):
    """A NaN in a float column would make the stage's JSONL writer fail with no location. Breaks if NaN
    in an extra column is copied through or reported without row and field."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "nan.parquet"
    columns = {k: [v, v if k != "chosen" else "four"] for k, v in PAIR.items()}
    pq.write_table(pa.table({**columns, "gold": pa.array([1.0, float("nan")])}), path)
    with pytest.raises(PreferenceDataError, match=r"nan\.parquet: row 1: field 'gold': nan is not a finite number"):
        load_preferences(str(path))
    assert dict(read_preferences(str(path), invalid="skip").skipped) == {"non_finite_number": 1}


def test_duplicate_ids_name_both_lines(tmp_path):
    """Two records with one id would collide downstream (splits, lineage). Breaks if the duplicate loads,
    or if the message does not name both lines."""
    path = _write_lines(tmp_path / "dup.jsonl", [json.dumps({**PAIR, "id": "a"}), json.dumps({**PAIR, "id": "b"}),
                                                 json.dumps({**PAIR, "id": "a", "chosen": "four"})])
    with pytest.raises(PreferenceDataError, match=r"dup\.jsonl: line 3: field 'id': duplicate id 'a' \(first at line 1\)"):
        load_preferences(path)
    load = read_preferences(path, invalid="skip")
    assert [r["id"] for r in load.records] == ["a", "b"] and dict(load.skipped) == {"duplicate_id": 1}


def test_ultrafeedback_prompt_ids_repeat_without_clashing(tmp_path):
    """UltraFeedback's prompt_id names a prompt; two pairs for one prompt are not duplicates. Breaks if
    they are refused, or if their ids collide."""
    path = tmp_path / "uf.jsonl"
    second = {**UF, "chosen": [{"role": "assistant", "content": "Green."}]}
    write_jsonl_atomic([UF, second, {**UF, "prompt_id": "uf-9"}], path)
    assert [r["id"] for r in load_preferences(str(path))] == ["uf-1", "uf-1-2", "uf-9"]


def test_over_long_line_is_refused_before_parsing(tmp_path):
    """A line over MAX_LINE_BYTES (a binary or single-line file) is refused naming its line, without
    being read whole. Breaks if the limit is not enforced or the line number is lost."""
    path = tmp_path / "long.jsonl"
    with open(path, "wb") as handle:
        handle.write(json.dumps(PAIR).encode() + b"\n")
        handle.write(b'{"prompt": "' + b"x" * MAX_LINE_BYTES + b'"}\n')
    with pytest.raises(PreferenceDataError, match=rf"long\.jsonl: line 2: line longer than {MAX_LINE_BYTES} bytes"):
        load_preferences(str(path))


def test_text_reader_limits_and_line_numbers(tmp_path):
    """The shared reader: a line of exactly the limit passes, one byte more fails; CRLF endings are
    stripped; a bad byte on a later line reports that line. Breaks on an off-by-one in the limit."""
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfab\r\n" + b"y" * 10 + b"\nok\n")
    assert list(iter_lines(path, max_line_bytes=10)) == [(1, "ab"), (2, "y" * 10), (3, "ok")]
    with pytest.raises(TextFileError, match=r"line 2: line longer than 9 bytes"):
        list(iter_lines(path, max_line_bytes=9))
    path.write_bytes(b"ok\nfine\n\xc3(\n")
    with pytest.raises(TextFileError, match=r"t\.txt: line 3: not valid UTF-8 \(byte 0xc3 at column 1\)"):
        read_text(path)


def test_non_finite_number_in_a_json_array_names_the_item(tmp_path):
    """A .json array has no useful line per record; the item index and field locate the NaN instead.
    Breaks if NaN in a .json array loads."""
    path = tmp_path / "arr.json"
    path.write_text('[{"prompt": "p", "chosen": "a", "rejected": "b"},\n {"prompt": "p", "chosen": "a", "rejected": "b", "w": NaN}]')
    with pytest.raises(PreferenceDataError, match=r"arr\.json: item 1: field 'w': NaN is not a finite number"):
        load_preferences(str(path))
