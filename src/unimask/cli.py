"""``unimask <command>``: the command-line interface.

Each command lives in ``unimask.commands.<name>`` and provides ``register(subparsers)``, which adds its
parser and sets ``func`` to a typed function taking the parsed arguments and returning an exit code.
A ``UnimaskError`` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from unimask.errors import UnimaskError

COMMAND_MODULES = (
    "demo", "compare", "report", "tour", "info", "masks", "tokenizer", "data", "objectives", "train", "finetune",
    "convert",
    "generate", "serve", "params", "rank", "emergence", "eval",
)


def _with_default(action: argparse.Action, text: str) -> str:
    """``text`` with ``(default: X)`` appended when the option has a default its help does not mention yet."""
    default = action.default
    if (not text or "default" in text.lower() or not action.option_strings or default is None
            or default is argparse.SUPPRESS or isinstance(default, bool) or default in ("", [], ())):
        return text
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{text} (default: {shown})"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default (``(default: X)`` unless the help text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return _with_default(action, action.help or "")


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """As :class:`DefaultsHelpFormatter`, keeping the description's own line breaks (examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return _with_default(action, action.help or "")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (what, where, where to read more), exit code 2, and whose
    help states every option's default."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        formatter = kwargs.get("formatter_class", argparse.HelpFormatter)
        kwargs["formatter_class"] = (RawDescriptionDefaultsHelpFormatter
                                     if formatter is argparse.RawDescriptionHelpFormatter else
                                     formatter if formatter not in (argparse.HelpFormatter, None) else
                                     DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from unimask import __version__

    parser = OneLineParser(prog="unimask", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"unimask {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"unimask.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"unimask.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except UnimaskError as exc:
        report_error(f"unimask {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        print(f"unimask {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `unimask params X | head`: the reader left; stay quiet
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def report_error(line: str) -> None:
    """Print a refusal as one line on stderr. Under torchrun only rank 0 prints it (not once per process), and
    every rank writes it to torchrun's error file, so torchrun's closing summary shows this line as the root
    cause instead of a link to its documentation."""
    import json
    import os
    import time

    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        data = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
        try:
            with open(error_file, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
        except OSError:
            pass


if __name__ == "__main__":
    raise SystemExit(main())
