"""Corpora: the built-in English text and readers for text files, folders, JSONL and Parquet.

The built-in corpus needs no download: it is the docstrings of the installed Python standard library
(module, class and function docstrings, in sorted file order, about 1.5 MB), gathered once and cached.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from unimask.data.cache import atomic_write_text, cache_dir
from unimask.errors import DataError

log = logging.getLogger(__name__)

BUILTIN_BYTES = 1_500_000
DOC_SEPARATOR = "\n\n\n"
BIG_TEXT_CHARS = 1 << 20
# A longer line is refused, naming file and line: one 100 MB line would take the tokenizer minutes and
# gigabytes (it cannot cut a document inside a line, so a line is the smallest unit it gets).
MAX_LINE_BYTES = 1 << 22
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"}
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ""}
JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _gather_docstrings(limit: int) -> str:
    parts: list[str] = []
    size = 0
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) >= 40 and doc.isascii():
                    doc = re.sub(r"\n{3,}", "\n\n", doc.strip())
                    parts.append(doc)
                    size += len(doc) + 3
        if size >= limit:
            break
    return DOC_SEPARATOR.join(parts)


def builtin_text() -> str:
    """English text from the docstrings of the installed Python standard library (~1.5 MB, deterministic).

    Documents (one docstring each) are separated by two blank lines. Cached in the
    unimask cache directory per Python version.
    """
    tag = f"py{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir() / f"builtin-corpus-{tag}-v1.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    text = _gather_docstrings(BUILTIN_BYTES)
    if not text:
        raise DataError("the built-in corpus is empty: no docstrings found in the Python standard library; "
                        "pass --input with your own text")
    atomic_write_text(path, text)
    return text


def builtin_documents() -> list[str]:
    """The built-in corpus split into documents (one docstring each)."""
    return [d for d in builtin_text().split(DOC_SEPARATOR) if d.strip()]


@dataclass
class ReadStats:
    """What a corpus read saw: files read, files skipped (with the reason) and documents yielded."""

    files: int = 0
    documents: int = 0
    skipped: list[str] = field(default_factory=list)


def corpus_files(path: str | Path) -> list[Path]:
    """The files of a corpus: the file itself, or every file below a folder (sorted, hidden files skipped)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in
                                                                            f.relative_to(p).parts))
        if not files:
            raise DataError(f"{p}: the corpus folder holds no files; put .txt, .jsonl or .parquet files in it")
        return files
    raise DataError(f"{p}: no such corpus file or folder")


def _long_line(raw: bytes, limit: int = MAX_LINE_BYTES) -> int | None:
    """The number (1-based) of the first line of ``raw`` longer than ``limit`` bytes, or None."""
    start, lineno = 0, 1
    while start < len(raw):
        end = raw.find(b"\n", start, start + limit + 1)
        if end < 0:
            return lineno if len(raw) - start > limit else None
        start, lineno = end + 1, lineno + 1
    return None


def _too_long(path: Path, lineno: int) -> DataError:
    return DataError(f"{path}:{lineno}: a line longer than {MAX_LINE_BYTES >> 20} MiB; break it into lines or "
                     "paragraphs, or remove the file (or pass --skip-bad)")


def _read_text_file(path: Path) -> Iterator[str]:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path}: looks binary (NUL bytes), not UTF-8 text; remove it or pass --skip-bad")
    long = _long_line(raw)
    if long is not None:
        raise _too_long(path, long)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8 or pass --skip-bad") \
            from None
    text = text.removeprefix("\ufeff")
    # A big file becomes several documents cut at paragraph breaks (so no single string is huge).
    while len(text) > BIG_TEXT_CHARS:
        cut = text.find("\n\n", BIG_TEXT_CHARS)
        if cut < 0:
            break
        head, text = text[:cut], text[cut + 2:]
        if head.strip():
            yield head
    if text.strip():
        yield text


def _read_json_array(path: Path, text_field: str) -> Iterator[str]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path}: not valid JSON; fix it or pass --skip-bad") from None
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise DataError(f"{path}: record {i} has no string field '{text_field}'; set the text field "
                            "(--text-field)")
        if record[text_field].strip():
            yield record[text_field]


def _read_jsonl_file(path: Path, text_field: str) -> Iterator[str]:
    with path.open("rb") as handle:
        if handle.read(64).lstrip().startswith(b"["):
            yield from _read_json_array(path, text_field)
            return
    with path.open("rb") as handle:
        for lineno, data in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
                raise _too_long(path, lineno)
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start} of the line); re-encode the "
                                "file or pass --skip-bad") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno}: not a JSON line; fix the line or pass --skip-bad") from None
            if not isinstance(record, dict) or text_field not in record:
                raise DataError(f"{path}:{lineno}: no field '{text_field}'; set the text field "
                                "(--text-field) to the one your records use")
            value = record[text_field]
            if not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: field '{text_field}' is not a string")
            if value.strip():
                yield value


def _read_parquet_file(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a declared extra
        raise DataError(f"{path}: reading Parquet needs pyarrow; pip install 'unimask[data]'") from None
    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[text_field]) if text_field in names else None
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}); "
                        "remove it or pass --skip-bad") from None
    if table is None:
        raise DataError(f"{path}: no column '{text_field}' (columns: {', '.join(names)}); "
                        "set the text field (--text-field)")
    for value in table.column(text_field).to_pylist():
        if isinstance(value, str) and value.strip():
            yield value


def read_file(path: Path, text_field: str = "text") -> Iterator[str]:
    """Documents of one corpus file, chosen by suffix: JSONL records, Parquet rows or one text document."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        yield from _read_jsonl_file(path, text_field)
    elif suffix in PARQUET_SUFFIXES:
        yield from _read_parquet_file(path, text_field)
    else:
        yield from _read_text_file(path)


def iter_documents(path: str | Path | None, text_field: str = "text", *, skip_bad: bool = False,
                   stats: ReadStats | None = None) -> Iterator[str]:
    """Every document of a corpus (``None`` = the built-in corpus). A bad file raises ``DataError`` naming
    it, or with ``skip_bad`` is skipped and counted in ``stats.skipped``."""
    stats = stats if stats is not None else ReadStats()
    if path is None or str(path) == "builtin":
        stats.files += 1
        for doc in builtin_documents():
            stats.documents += 1
            yield doc
        return
    for file in corpus_files(path):
        docs: list[str] = []
        try:
            docs = list(read_file(file, text_field))
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipping %s", exc)
            stats.skipped.append(str(exc))
            continue
        stats.files += 1
        for doc in docs:
            stats.documents += 1
            yield doc


def corpus_fingerprint(path: str | Path | None) -> str:
    """A short hash of a corpus's file names, sizes and modification times (for cache keys)."""
    h = hashlib.sha256()
    if path is None or str(path) == "builtin":
        h.update(f"builtin-{sys.version}".encode())
    else:
        for file in corpus_files(path):
            st = file.stat()
            h.update(f"{file}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
