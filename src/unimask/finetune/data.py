"""Labelled data for fine-tuning: input/output pairs and chats, read from JSONL or Parquet, turned into
the batch contract of every family.

A record is either a pair (``input_field``, ``output_field``: the input becomes the source, the output
the target) or a chat (``messages_field``: ``[{"role": "system"|"user"|"assistant", "content": ...}]``),
rendered with the server's chat template (``unimask.serving.chat``) or with a Hugging Face tokenizer's
own ``chat_template`` when the model brings one. The loss goes on the output only (a causal decoder
takes it on every token when asked: ``loss_on_targets_only: false``), and in a chat on every assistant
turn only: a decoder row holds the whole chat with the assistant turns carrying loss; for a prefix
decoder and an encoder-decoder, whose input is read at once, a chat becomes one example per assistant
turn (the transcript before it is the source).

Bad input is one clear error naming the file and line (``skip_bad`` skips such records and counts them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unimask.data.corpus import JSONL_SUFFIXES, PARQUET_SUFFIXES, corpus_files
from unimask.errors import DataError
from unimask.objectives.base import IGNORE

log = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Segment:
    """A run of token ids; ``loss`` marks the tokens the model is trained to write."""

    ids: tuple[int, ...]
    loss: bool


@dataclass
class Record:
    """One labelled example before tokenization: a pair (``source``, ``target``) or a chat (``messages``)."""

    where: str
    source: str | None = None
    target: str | None = None
    messages: list[dict[str, str]] | None = None


@dataclass
class ReadReport:
    """What reading saw: records kept and the ones skipped (``skip_bad``) with the reason."""

    records: int = 0
    skipped: list[str] = field(default_factory=list)


def _check_chat(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{i}] needs a string 'content'")
        if m.get("role") not in ROLES:
            raise DataError(f"{where}: messages[{i}] has role {m.get('role')!r}; use one of {', '.join(ROLES)}")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise DataError(f"{where}: a chat needs at least one non-empty assistant turn to learn from")
    return out


def parse_record(record: Any, where: str, input_field: str, output_field: str, messages_field: str) -> Record:
    """One JSON object -> a ``Record`` (``DataError`` naming ``where`` when it is not usable)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    if messages_field in record:
        return Record(where, messages=_check_chat(record[messages_field], where))
    for name in (input_field, output_field):
        if name not in record:
            raise DataError(f"{where}: no field '{name}' (fields: {', '.join(map(str, record)) or 'none'}); set "
                            f"--input-field/--output-field, or give chats in '{messages_field}'")
        if not isinstance(record[name], str):
            raise DataError(f"{where}: field '{name}' is not a string")
    if not record[output_field].strip():
        raise DataError(f"{where}: field '{output_field}' is empty; there is nothing to learn from")
    return Record(where, source=record[input_field], target=record[output_field])


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        with path.open("r", encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield where, DataError(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8") from None


def _parquet_records(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a declared extra
        raise DataError(f"{path}: reading Parquet needs pyarrow; pip install 'unimask[data]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    for i, row in enumerate(rows):
        yield f"{path}:row {i}", row


def read_records(path: str | Path, *, input_field: str = "input", output_field: str = "output",
                 messages_field: str = "messages", skip_bad: bool = False,
                 report: ReadReport | None = None) -> list[Record]:
    """Every labelled record of a JSONL/Parquet file or folder, in order."""
    report = report if report is not None else ReadReport()
    out: list[Record] = []
    for file in corpus_files(path):
        suffix = file.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            rows: Iterator[tuple[str, Any]] = _jsonl_records(file)
        elif suffix in PARQUET_SUFFIXES:
            rows = _parquet_records(file)
        else:
            raise DataError(f"{file}: labelled data must be JSONL (.jsonl) or Parquet (.parquet)")
        for where, raw in rows:
            try:
                if isinstance(raw, DataError):
                    raise DataError(f"{raw}; fix the line or pass --skip-bad")
                out.append(parse_record(raw, where, input_field, output_field, messages_field))
            except DataError as exc:
                if not skip_bad:
                    raise
                report.skipped.append(str(exc))
    if not out:
        raise DataError(f"{path}: no usable labelled record" + (f" ({len(report.skipped)} skipped)"
                                                                 if report.skipped else ""))
    report.records = len(out)
    if report.skipped:
        log.warning("skipped %d bad records of %s", len(report.skipped), path)
    return out


# Chats -> segments ------------------------------------------------------------------------------------

ChatRenderer = Callable[[Sequence[Mapping[str, str]], bool], str]


def plain_renderer(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    """The server's template (``unimask.serving.chat``): ``Role: text`` turns separated by blank lines."""
    from unimask.serving.chat import ROLES as NAMES

    text = "\n\n".join(f"{NAMES[m['role']]}: {m['content'].strip()}" for m in messages)
    return text + ("\n\nAssistant:" if add_generation_prompt else "")


def hf_renderer(tokenizer_dir: str | Path) -> ChatRenderer | None:
    """A renderer from a Hugging Face tokenizer's ``chat_template`` (None when it has none)."""
    config = Path(tokenizer_dir) / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, json.JSONDecodeError):
        return None
    if not template:
        return None
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))

    def render(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
        return hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)

    return render


def chat_turns(messages: Sequence[Mapping[str, str]], render: ChatRenderer) -> list[tuple[str, str]]:
    """``[(text before the reply, reply text), ...]``, one per non-empty assistant turn, where the text
    before is the rendered chat up to that turn with the generation prompt (so a template's own turn
    markers belong to the prompt, and the reply is what the model must write)."""
    turns = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant" or not m["content"].strip():
            continue
        before = render(messages[:k], True)
        full = render(messages[: k + 1], False)
        if not full.startswith(before):
            raise DataError("the chat template does not render a chat as a prefix of the longer chat; cannot "
                            "find the assistant turns")
        turns.append((before, full[len(before):]))
    return turns


# Records -> the batch contract -------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """How a family reads a labelled example: a causal decoder starts with BOS, an encoder-decoder's
    source ends with EOS (T5's inputs do), every target ends with EOS."""

    arch: str
    bos: int
    eos: int
    start_id: int
    targets_only: bool = True


def _encode(tok: Any, text: str) -> list[int]:
    return tok.encode(text)


def segments_of(record: Record, tok: Any, render: ChatRenderer) -> list[list[Segment]]:
    """Token segments of a record: one list for a pair; for a chat, one list holding every turn (decoder
    rows) -- ``split_turns`` splits it per assistant turn when the family needs it."""
    if record.messages is None:
        return [[Segment(tuple(_encode(tok, record.source or "")), False),
                 Segment(tuple(_encode(tok, record.target or "")) + (tok.eos_id,), True)]]
    parts: list[Segment] = []
    done = ""
    for before, reply in chat_turns(record.messages, render):
        parts.append(Segment(tuple(_encode(tok, before[len(done):])), False))
        parts.append(Segment(tuple(_encode(tok, reply)) + (tok.eos_id,), True))
        done = before + reply
    return [parts]


def decoder_item(segments: Sequence[Segment], layout: Layout) -> dict[str, np.ndarray]:
    """One decoder row: ``[bos] + segments`` (causal) or ``segments`` (prefix, whose prefix is the first
    segment); position t predicts token t + 1, with loss where that token is in a loss segment (every
    token for a causal decoder when ``targets_only`` is False)."""
    lead = [layout.bos] if layout.arch == "causal" else []
    tokens = lead + [t for s in segments for t in s.ids]
    flags = [False] * len(lead) + [s.loss for s in segments for _ in s.ids]
    if not layout.targets_only:
        flags = [True] * len(tokens)
        flags[0] = False
    inputs = np.asarray(tokens[:-1], dtype=np.int64)
    labels = np.where(np.asarray(flags[1:]), np.asarray(tokens[1:]), IGNORE).astype(np.int64)
    item = {"input_ids": inputs, "labels": labels, "position_ids": np.arange(len(inputs), dtype=np.int64)}
    if layout.arch == "prefix":
        n_prefix = len(segments[0].ids) if not segments[0].loss else 0
        item["is_prefix"] = np.arange(len(inputs)) < n_prefix
    return item


def encdec_item(segments: Sequence[Segment], layout: Layout) -> dict[str, np.ndarray]:
    """Encoder ``source + [eos]``; decoder ``[start] + target[:-1]`` predicting ``target``."""
    source = [t for s in segments[:-1] for t in s.ids] + [layout.eos]
    target = list(segments[-1].ids)
    dec = [layout.start_id] + target[:-1]
    return {"input_ids": np.asarray(source, dtype=np.int64), "position_ids": np.arange(len(source), dtype=np.int64),
            "decoder_input_ids": np.asarray(dec, dtype=np.int64), "labels": np.asarray(target, dtype=np.int64),
            "decoder_position_ids": np.arange(len(dec), dtype=np.int64)}


def split_turns(segments: Sequence[Segment]) -> list[list[Segment]]:
    """One ``[source, reply]`` example per loss segment: everything before it becomes the source."""
    out = []
    for k, s in enumerate(segments):
        if s.loss:
            source = tuple(t for prev in segments[:k] for t in prev.ids)
            out.append([Segment(source, False), s])
    return out


def items_of(record: Record, tok: Any, render: ChatRenderer, layout: Layout) -> list[dict[str, np.ndarray]]:
    """The laid-out items of one record for ``layout.arch``."""
    items = []
    for segs in segments_of(record, tok, render):
        if layout.arch == "causal":
            items.append(decoder_item(segs, layout))
            continue
        for example in split_turns(segs):
            items.append(decoder_item(example, layout) if layout.arch == "prefix" else encdec_item(example, layout))
    return items


__all__ = ["Layout", "ReadReport", "Record", "Segment", "chat_turns", "decoder_item", "encdec_item", "hf_renderer",
           "items_of", "parse_record", "plain_renderer", "read_records", "segments_of", "split_turns"]
