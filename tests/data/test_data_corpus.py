"""Corpora: built-in text, text files and folders, JSONL, Parquet, and the bad-input errors."""

from __future__ import annotations

import json

import pytest

from unimask.data.corpus import ReadStats, builtin_documents, builtin_text, iter_documents
from unimask.errors import DataError


def test_builtin_text_is_english_and_deterministic():
    text = builtin_text()
    assert 1_300_000 < len(text) < 1_700_000
    assert text == builtin_text()
    docs = builtin_documents()
    assert len(docs) > 1000 and all(d.strip() for d in docs)
    assert text.count(" the ") > 5000 and text.isascii()


def test_text_folder_jsonl_and_parquet(tmp_path):
    (tmp_path / "a.txt").write_text("first document", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("中文文本也可以。", encoding="utf-8")
    (tmp_path / ".hidden").write_text("skip me")
    assert list(iter_documents(tmp_path)) == ["first document", "中文文本也可以。"]
    jl = tmp_path / "x.jsonl"
    jl.write_text("\n".join(json.dumps({"body": t, "id": i}) for i, t in enumerate(["one", "two"])) + "\n\n")
    assert list(iter_documents(jl, "body")) == ["one", "two"]
    with pytest.raises(DataError, match="no field 'text'"):
        list(iter_documents(jl))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["p1", "p2", None]}), tmp_path / "t.parquet")
    assert list(iter_documents(tmp_path / "t.parquet", "content")) == ["p1", "p2"]
    with pytest.raises(DataError, match="no column 'text'"):
        list(iter_documents(tmp_path / "t.parquet"))


def test_binary_and_non_utf8_files_name_the_file_or_are_counted(tmp_path):
    (tmp_path / "good.txt").write_text("fine text", encoding="utf-8")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\x00\x01\x02")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match=r"image\.bin") as exc:
        list(iter_documents(tmp_path))
    assert "--skip-bad" in str(exc.value)
    stats = ReadStats()
    assert list(iter_documents(tmp_path, skip_bad=True, stats=stats)) == ["fine text"]
    assert len(stats.skipped) == 2 and any("latin1.txt" in s and "UTF-8" in s for s in stats.skipped)


def test_missing_and_empty_corpora(tmp_path):
    with pytest.raises(DataError, match="no such corpus"):
        list(iter_documents(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        list(iter_documents(tmp_path / "empty"))
    (tmp_path / "blank.txt").write_text("   \n")
    assert list(iter_documents(tmp_path / "blank.txt")) == []


def test_json_arrays_and_big_text_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "x"}, {"text": " "}, {"text": "y"}]))
    assert list(iter_documents(tmp_path / "a.json")) == ["x", "y"]
    para = "word " * 100 + "\n\n"
    big = para * 5000  # 2.5 MB: cut at paragraph breaks into ~1 MiB documents
    (tmp_path / "big.txt").write_text(big)
    docs = list(iter_documents(tmp_path / "big.txt"))
    assert len(docs) == 3 and all(len(d) <= (1 << 20) + len(para) for d in docs)
    assert sum(d.count("word") for d in docs) == 500_000
