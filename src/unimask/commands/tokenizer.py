"""``unimask tokenizer``: train a byte-level BPE tokenizer with unimask's special tokens, or encode text."""

from __future__ import annotations

import argparse
from pathlib import Path

from unimask.errors import UnimaskError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer or encode text with one")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    t = tsub.add_parser("train", help="train on a corpus ('builtin' = the built-in English text)")
    t.add_argument("--input", default="builtin", help="text file/folder, JSONL or Parquet, or 'builtin'")
    t.add_argument("--vocab-size", type=int, default=4096, help="total vocabulary size (default 4096)")
    t.add_argument("--whole-chars", type=int, default=0,
                   help="for Chinese and other large scripts: the N most frequent non-ASCII characters become "
                        "tokens of their own (rarer ones stay bytes); counted in --vocab-size (default 0)")
    t.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    t.add_argument("--text-field", default="text", help="JSONL/Parquet field holding the text")
    t.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable files instead of failing")
    t.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer.json in --out")
    t.set_defaults(func=run_train)
    e = tsub.add_parser("encode", help="show the tokens of a text")
    e.add_argument("text", help="the text to encode")
    e.add_argument("--tokenizer", default=None, help="tokenizer.json or its directory (default: built-in)")
    e.set_defaults(func=run_encode)


def run_train(args: argparse.Namespace) -> int:
    from unimask.data.cache import check_writable
    from unimask.data.corpus import ReadStats, iter_documents
    from unimask.data.tokenizer import BASE_SPECIALS, N_SENTINELS, tokenizer_summary, train_tokenizer

    out = Path(args.out)
    if (out / "tokenizer.json").exists() and not args.overwrite:
        raise UnimaskError(f"{out / 'tokenizer.json'} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise UnimaskError(f"{out}: exists and is not a directory; choose another --out")
    floor = len(BASE_SPECIALS) + 256 + N_SENTINELS
    if args.whole_chars < 0:
        raise UnimaskError(f"--whole-chars must be 0 or more, got {args.whole_chars}")
    floor += args.whole_chars
    if args.vocab_size < floor:  # before reading a possibly large corpus
        raise UnimaskError(f"--vocab-size {args.vocab_size} is too small: byte-level BPE with unimask's special "
                           f"tokens{' and the whole characters' if args.whole_chars else ''} needs at least {floor}")
    check_writable(out, "--out directory")
    stats = ReadStats()
    source = None if args.input == "builtin" else args.input
    docs = list(iter_documents(source, args.text_field, skip_bad=args.skip_bad, stats=stats))
    if not docs:
        raise UnimaskError(f"{args.input}: the corpus is empty (no non-blank text); give it some text")
    tok = train_tokenizer(docs, args.vocab_size, whole_chars=args.whole_chars)
    try:
        path = tok.save(out)
    except OSError as exc:
        raise UnimaskError(f"{out}: cannot write tokenizer.json there ({exc.strerror}); choose another --out") \
            from None
    print(f"trained on {stats.documents} documents from {stats.files} file(s)"
          + (f", skipped {len(stats.skipped)} bad file(s)" if stats.skipped else ""))
    print(tokenizer_summary(tok))
    print(f"wrote {path}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from unimask.data.tokenizer import Tokenizer, default_tokenizer

    tok = Tokenizer.load(args.tokenizer) if args.tokenizer else default_tokenizer()
    ids = tok.encode(args.text)
    print(f"{len(ids)} tokens: {ids}")
    print(" | ".join(repr(tok.decode([i], skip_special=False)) for i in ids))
    back = tok.decode(ids)
    print(f"round trip: {'exact' if back == args.text else 'DIFFERENT: ' + repr(back)}")
    return 0
