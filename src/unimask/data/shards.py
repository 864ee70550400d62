"""Tokenize a corpus once into memory-mapped shards (``unimask data prepare``) and read them back.

A prepared directory holds ``index.json``, ``tokenizer.json`` and per shard ``shard-NNNNN.bin`` (the
token ids, uint16 when the vocabulary fits, else uint32) with ``shard-NNNNN.offsets.npy`` (int64 document
start offsets, one more than the documents). Writing happens in a temporary sibling directory that is
renamed into place at the end, so a failure never leaves a half-written or overwritten directory.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unimask.data.cache import ensure_dir
from unimask.data.corpus import ReadStats, iter_documents
from unimask.data.tokenizer import Tokenizer
from unimask.errors import DataError

log = logging.getLogger(__name__)

FORMAT = "unimask-tokens"
VERSION = 1
SHARD_TOKENS = 1 << 28  # 268M tokens per shard (512 MiB as uint16)
_ENCODE_BATCH = 256


@dataclass
class PrepareResult:
    """What ``prepare`` wrote: directory, token and document counts, skipped files."""

    out: Path
    n_tokens: int
    n_docs: int
    n_shards: int
    skipped: list[str] = field(default_factory=list)


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class _ShardWriter:
    def __init__(self, root: Path, dtype: np.dtype, shard_tokens: int) -> None:
        self.root, self.dtype, self.shard_tokens = root, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._handle: Any = None
        self._offsets: list[int] = []

    def _open(self) -> None:
        name = f"shard-{len(self.shards):05d}"
        self._handle = (self.root / f"{name}.bin").open("wb")
        self._offsets = [0]
        self.shards.append({"file": f"{name}.bin", "offsets": f"{name}.offsets.npy", "n_tokens": 0, "n_docs": 0})

    def _close(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        np.save(self.root / self.shards[-1]["offsets"], np.asarray(self._offsets, dtype=np.int64))
        self._handle = None

    def add(self, ids: list[int]) -> None:
        if self._handle is None or (self._offsets[-1] and self._offsets[-1] + len(ids) > self.shard_tokens):
            self._close()
            self._open()
        np.asarray(ids, dtype=self.dtype).tofile(self._handle)
        self._offsets.append(self._offsets[-1] + len(ids))
        self.shards[-1]["n_tokens"] += len(ids)
        self.shards[-1]["n_docs"] += 1

    def finish(self) -> list[dict[str, Any]]:
        self._close()
        return self.shards


def _check_out(out: Path, overwrite: bool, source: str | Path | None) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory; choose another --out")
    if source is not None and str(source) != "builtin":
        src, dst = Path(source).resolve(), out.resolve()
        if src == dst or dst in src.parents:
            raise DataError(f"{out}: holds the corpus {source} itself; write the prepared data somewhere else")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: directory is not empty; choose another --out or pass --overwrite")
        if not is_prepared(out):
            # --overwrite replaces earlier prepared data, never a folder of other files
            raise DataError(f"{out}: not empty and not prepared data (no index.json); --overwrite only replaces "
                            "a directory written by `unimask data prepare`; choose another --out")


def prepare(source: str | Path | None, out: str | Path, tokenizer: Tokenizer, *, text_field: str = "text",
            skip_bad: bool = False, overwrite: bool = False, progress: bool = True,
            shard_tokens: int = SHARD_TOKENS, keep_existing: bool = False) -> PrepareResult:
    """Tokenize every document of ``source`` (``None`` = built-in corpus) into shards under ``out``.

    ``keep_existing``: when another process finished the same ``out`` first, keep its result (caches).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    _check_out(out, overwrite, source)
    ensure_dir(out.parent, "folder of --out")
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    except OSError as exc:
        raise DataError(f"{out.parent}: cannot write there ({exc.strerror}); choose another --out") from None
    try:
        stats = ReadStats()
        writer = _ShardWriter(tmp, _dtype_for(tokenizer.vocab_size), shard_tokens)
        n_tokens = n_docs = 0
        bar = tqdm(desc=f"tokenizing {source or 'built-in corpus'}", unit=" docs", disable=not progress or None)
        batch: list[str] = []

        def flush() -> None:
            nonlocal n_tokens, n_docs
            for ids in tokenizer.encode_batch(batch):
                if ids:
                    writer.add(ids)
                    n_tokens += len(ids)
                    n_docs += 1
            bar.update(len(batch))
            batch.clear()

        for doc in iter_documents(source, text_field, skip_bad=skip_bad, stats=stats):
            batch.append(doc)
            if len(batch) >= _ENCODE_BATCH:
                flush()
        flush()
        bar.close()
        if n_docs == 0:
            where = f" ({len(stats.skipped)} bad file(s) skipped)" if stats.skipped else ""
            raise DataError(f"{source}: the corpus is empty (no non-blank text found{where}); give it some text")
        shards = writer.finish()
        tokenizer.save(tmp)
        index = {"format": FORMAT, "version": VERSION, "dtype": writer.dtype.name, "n_tokens": n_tokens,
                 "n_docs": n_docs, "shards": shards, "tokenizer": "tokenizer.json",
                 "tokenizer_fingerprint": tokenizer.fingerprint(), "vocab_size": tokenizer.vocab_size,
                 "source": str(source) if source is not None else "builtin", "text_field": text_field,
                 "skipped": stats.skipped}
        (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        _swap_into_place(tmp, out, keep_existing)
        return PrepareResult(out, n_tokens, n_docs, len(shards), stats.skipped)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path, keep_existing: bool = False) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed only after success."""
    if keep_existing:
        try:
            tmp.rename(out)
        except OSError:
            if not is_prepared(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race: same content
        return
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{tmp.name[-8:]}")
        out.rename(backup)
    try:
        tmp.rename(out)
    except BaseException:
        if backup is not None:
            backup.rename(out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def is_prepared(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``prepare``."""
    return (Path(path) / "index.json").is_file()


class TokenStore:
    """Read-only view of a prepared directory: documents as memory-mapped token arrays."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        index_path = self.root / "index.json"
        try:
            self.index = json.loads(index_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{index_path}: missing or unreadable; run `unimask data prepare` again") from None
        if not isinstance(self.index, dict) or self.index.get("format") != FORMAT:
            raise DataError(f"{index_path}: not a unimask prepared-data index")
        try:
            dtype = np.dtype(self.index["dtype"])
            shards = list(self.index["shards"])
            if not shards:
                raise ValueError("no shards")
            for shard in shards:
                if not isinstance(shard, dict) or not all(isinstance(shard.get(k), str) for k in ("file", "offsets")):
                    raise ValueError(f"shard entry {shard!r} lacks 'file' or 'offsets'")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{index_path}: damaged index ({type(exc).__name__}: {exc}); run `unimask data prepare` "
                            "again") from None
        self._tokens: list[np.ndarray] = []
        starts, lengths, shard_of = [], [], []
        for k, shard in enumerate(shards):
            bin_path = self.root / shard["file"]
            offsets = self._offsets(self.root / shard["offsets"])
            expected = int(offsets[-1]) * dtype.itemsize
            if not bin_path.is_file() or bin_path.stat().st_size != expected:
                raise DataError(f"{bin_path}: missing or truncated (expected {expected} bytes); "
                                "run `unimask data prepare` again")
            self._tokens.append(np.memmap(bin_path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype))
            starts.append(offsets[:-1])
            lengths.append(np.diff(offsets))
            shard_of.append(np.full(len(offsets) - 1, k, dtype=np.int32))
        self.doc_start = np.concatenate(starts).astype(np.int64)  # (n_docs,)
        self.doc_len = np.concatenate(lengths).astype(np.int64)  # (n_docs,)
        self.doc_shard = np.concatenate(shard_of)  # (n_docs,)

    @staticmethod
    def _offsets(path: Path) -> np.ndarray:
        """A shard's document offsets ``(n_docs + 1,)``, checked (never unpickled)."""
        try:
            offsets = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: missing or unreadable ({type(exc).__name__}); "
                            "run `unimask data prepare` again") from None
        if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype.kind not in "iu" or offsets[0] != 0 \
                or (np.diff(offsets) < 0).any():
            raise DataError(f"{path}: not a list of document offsets; run `unimask data prepare` again")
        return offsets

    @property
    def n_docs(self) -> int:
        return len(self.doc_len)

    @property
    def n_tokens(self) -> int:
        return int(self.doc_len.sum())

    def tokens(self, doc: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Token ids of document ``doc`` (or a slice of it) as int64 ``(length,)``."""
        base = int(self.doc_start[doc]) + start
        n = int(self.doc_len[doc]) - start if length is None else length
        return np.asarray(self._tokens[int(self.doc_shard[doc])][base:base + n], dtype=np.int64)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self.root / self.index.get("tokenizer", "tokenizer.json"))
