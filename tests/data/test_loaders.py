"""Real preference loaders: HH transcripts, UltraFeedback messages, parquet, auto-detection, bad input."""

import json

import pandas as pd
import pytest

from pipelines.data.jsonl import JsonlError, read_jsonl, write_jsonl_atomic
from pipelines.data.loaders import PreferenceDataError, PreferenceSourceError, load_preferences
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
    pd.DataFrame([PAIR, {**PAIR, "rejected": ""}]).to_parquet(path)
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
    ({**PAIR, "chosen": "   "}, "chosen"),
    ({**PAIR, "rejected": PAIR["chosen"]}, "rejected"),
    ({**PAIR, "prompt": 3}, "prompt"),
    ({**UF, "rejected": [{"role": "user", "content": "x"}]}, "rejected"),
    ({"chosen": HH["chosen"], "rejected": HH["chosen"].replace("An apple.", "")}, "rejected"),
])
def test_bad_records_name_the_field(tmp_path, bad, field):
    path = _write_lines(tmp_path / "x.jsonl", [json.dumps(bad)])
    fmt = "ultrafeedback" if isinstance(bad.get("rejected"), list) else "auto"
    with pytest.raises(PreferenceDataError, match=rf"x\.jsonl: line 1: field '{field}'"):
        load_preferences(path, format=fmt)


def test_skip_invalid_drops_bad_records(tmp_path):
    path = _write_lines(tmp_path / "mixed.jsonl", [json.dumps(PAIR), json.dumps({**PAIR, "chosen": ""})])
    assert len(load_preferences(path, skip_invalid=True)) == 1


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
