"""``unimask data``: tokenize a corpus once into memory-mapped shards, and describe prepared data."""

from __future__ import annotations

import argparse
import json

from unimask.errors import UnimaskError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare a corpus (tokenize once into shards) or describe prepared data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pr = dsub.add_parser("prepare", help="tokenize a corpus into memory-mapped shards")
    pr.add_argument("--input", required=True, help="text file/folder, JSONL or Parquet, or 'builtin'")
    pr.add_argument("--out", required=True, help="directory to write (must be new or empty)")
    pr.add_argument("--tokenizer", default=None, help="tokenizer.json or its directory (default: built-in)")
    pr.add_argument("--text-field", default="text", help="JSONL/Parquet field holding the text")
    pr.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable files instead of failing")
    pr.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (only after success)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(func=run_prepare)
    info = dsub.add_parser("info", help="describe a prepared directory")
    info.add_argument("path", help="a directory written by `unimask data prepare`")
    info.set_defaults(func=run_info)


def run_prepare(args: argparse.Namespace) -> int:
    from unimask.data.shards import prepare
    from unimask.data.tokenizer import Tokenizer, default_tokenizer

    tok = Tokenizer.load(args.tokenizer) if args.tokenizer else default_tokenizer()
    source = None if args.input == "builtin" else args.input
    result = prepare(source, args.out, tok, text_field=args.text_field, skip_bad=args.skip_bad,
                     overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {result.n_tokens} tokens of {result.n_docs} documents in {result.n_shards} shard(s) to {result.out}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} bad file(s):")
        for line in result.skipped:
            print(f"  {line}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from unimask.data.shards import TokenStore, is_prepared

    if not is_prepared(args.path):
        raise UnimaskError(f"{args.path}: no index.json; prepare it with `unimask data prepare`")
    store = TokenStore(args.path)
    idx = store.index
    lengths = store.doc_len
    print(json.dumps({"source": idx["source"], "n_tokens": store.n_tokens, "n_docs": store.n_docs,
                      "dtype": idx["dtype"], "shards": len(idx["shards"]), "vocab_size": idx["vocab_size"],
                      "mean_doc_tokens": round(float(lengths.mean()), 1), "max_doc_tokens": int(lengths.max()),
                      "skipped_files": len(idx.get("skipped", []))}, indent=1))
    return 0
