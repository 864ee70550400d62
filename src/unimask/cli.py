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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (what, where, where to read more), exit code 2."""

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
        print(f"unimask {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unimask {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `unimask params X | head`: the reader left; stay quiet
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
