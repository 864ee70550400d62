"""``unimask generate``: text from a model directory, streamed to the terminal as it comes.

Prompts come from ``--prompt`` (repeatable; ``-`` reads all of stdin as one prompt) or ``--prompt-file``
(one prompt per line; ``-`` is stdin). A prompt with ``[MASK]``/``[sMASK]``/``[gMASK]`` given to a prefix
decoder is infilled GLM style; one with ``<extra_id_N>`` given to an encoder-decoder is infilled T5 style.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from unimask.errors import UnimaskError

if TYPE_CHECKING:  # pragma: no cover
    from unimask.serving.engine import LoadedModel, SamplingParams


DEFAULT_REPETITION_PENALTY = 1.2  # on the shipped causal run greedy text repeats itself less with it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text (or fill blanks) with a model directory",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--model", required=True, help="model directory: config.json, model.safetensors, tokenizer.json")
    p.add_argument("--prompt", action="append", default=[], help="a prompt ('-' = stdin); repeat for a batch")
    p.add_argument("--prompt-file", help="file with one prompt per line ('-' = stdin; default: none)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most new tokens per prompt")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--repetition-penalty", type=float, default=DEFAULT_REPETITION_PENALTY,
                   help="tokens already present lose probability (CTRL, Keskar et al. 2019; 1 = off). On by "
                        "default here so that greedy text from a small model does not loop; the server and "
                        "the Python API default to 1 (as OpenAI's API has no such penalty)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable; not printed)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for sampling (same seed, same text; default: unseeded, each run differs)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="prompts decoded together; a single prompt is streamed token by token")
    p.add_argument("--no-stream", action="store_true", help="print each completion only when it is finished")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per prompt (prompt, text, finish_reason)")
    p.add_argument("--echo", action="store_true", help="print the prompt before its completion")
    p.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None,
                   help="put BOS in front of each prompt (default: yes for a causal decoder, as causal_lm trains)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    """The prompts named by ``--prompt`` and ``--prompt-file``, in order."""
    prompts: list[str] = []
    for p in args.prompt:
        prompts.append(_read_stdin("--prompt -").rstrip("\n") if p == "-" else p)
    if args.prompt_file:
        if args.prompt_file == "-":
            text = _read_stdin("--prompt-file -")
        else:
            path = Path(args.prompt_file)
            if not path.is_file():
                raise UnimaskError(f"--prompt-file {path}: no such file")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise UnimaskError(f"--prompt-file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                                   ) from None
        prompts += [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UnimaskError("no prompt: give --prompt TEXT, --prompt - (stdin) or --prompt-file PATH")
    return prompts


def _read_stdin(what: str) -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise UnimaskError(f"{what}: standard input is not UTF-8 text (byte {exc.start})") from None


def run(args: argparse.Namespace) -> int:
    from unimask.generation.text import has_glm_blank, has_sentinel
    from unimask.serving.engine import LoadedModel, SamplingParams

    if args.batch_size < 1:
        raise UnimaskError(f"--batch-size must be at least 1, got {args.batch_size}")
    prompts = read_prompts(args)
    params = _params(args, SamplingParams)
    engine = LoadedModel.load(args.model, device=args.device, add_bos=args.add_bos)
    if engine.model.config.arch == "causal" and any(has_glm_blank(p) or has_sentinel(p) for p in prompts):
        print("note: a causal decoder fills no blanks; [MASK] and <extra_id_N> are read as text", file=sys.stderr)
    many = len(prompts) > 1
    todo = []  # (index, prompt) of plain completions
    for i, prompt in enumerate(prompts):  # infilling: one prompt at a time, printed whole
        if engine.can_infill(prompt):
            filled = engine.infill(prompt, params)
            _emit(sys.stdout, args, i, prompt, filled.text, "stop", many, spans=filled.spans)
        else:
            todo.append((i, prompt))
    for start in range(0, len(todo), args.batch_size):
        _complete_batch(engine, todo[start:start + args.batch_size], params, args, many)
    return 0


def _params(args: argparse.Namespace, kind: type[SamplingParams]) -> SamplingParams:
    """The generation settings, checked as the server checks them (one line naming the option if not)."""
    from unimask.serving.engine import RequestError

    try:
        return kind.from_user(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=tuple(args.stop),
                              seed=args.seed)
    except RequestError as exc:
        option = {"max_new_tokens": "max-new-tokens"}.get(exc.param or "", (exc.param or "").replace("_", "-"))
        raise UnimaskError(f"--{option}: {exc}; see `unimask generate --help`") from None


def _complete_batch(engine: LoadedModel, batch: list[tuple[int, str]], params: SamplingParams,
                    args: argparse.Namespace, many: bool) -> None:
    """Decode a batch together; a batch of one is streamed token by token, others print rows as they end."""
    out = sys.stdout
    live = not args.no_stream and not args.jsonl and len(batch) == 1
    texts = [""] * len(batch)
    if live:
        _head(out, args, batch[0][0], batch[0][1], many)
    for chunk in engine.stream([p for _, p in batch], params):
        texts[chunk.index] += chunk.text
        if live:
            out.write(chunk.text)
        if chunk.finish_reason is not None:
            if live:
                out.write("\n")
            else:
                i, prompt = batch[chunk.index]
                _emit(out, args, i, prompt, texts[chunk.index], chunk.finish_reason, many)
        out.flush()


def _head(out: TextIO, args: argparse.Namespace, i: int, prompt: str, many: bool) -> None:
    if many:
        out.write(f"[{i}] ")
    if args.echo:
        out.write(prompt)


def _emit(out: TextIO, args: argparse.Namespace, i: int, prompt: str, text: str, reason: str, many: bool,
          spans: list[str] | None = None) -> None:
    if args.jsonl:
        record = {"index": i, "prompt": prompt, "text": text, "finish_reason": reason}
        if spans is not None:
            record["spans"] = spans
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    _head(out, args, i, prompt, many)
    out.write(text + "\n")
