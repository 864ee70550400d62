"""``unimask objectives``: see what each pretraining objective does to a text, token by token."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("objectives", help="list the objectives or show what one does to a text")
    osub = p.add_subparsers(dest="objectives_command", metavar="ACTION", required=True)
    show = osub.add_parser("show", help="print source, target, loss positions and (GLM) 2D positions")
    show.add_argument("text", help="the text to transform")
    show.add_argument("--objective", default="span_corruption",
                      help="a name (causal_lm, prefix_lm, span_corruption, bart_infilling, glm_blank, ul2, ul2r) "
                           "or a JSON settings object")
    show.add_argument("--arch", default="prefix", choices=("causal", "prefix", "encoder_decoder"),
                      help="family layout to show (default: prefix)")
    show.add_argument("--seed", type=seed, default=0, help="seed of the objective's random choices (spans, modes)")
    show.add_argument("--tokenizer", default=None, help="tokenizer.json or its directory (default: built-in)")
    show.set_defaults(func=run_show)
    lst = osub.add_parser("list", help="list the objectives and their default settings")
    lst.set_defaults(func=run_list)


def _tok_text(tok: object, i: int) -> str:
    text = tok.decode([int(i)], skip_special=False)  # type: ignore[attr-defined]
    return repr(text)[1:-1]


def run_show(args: argparse.Namespace) -> int:
    import numpy as np

    from unimask.data.tokenizer import Tokenizer, default_tokenizer
    from unimask.objectives import build_objective
    from unimask.objectives.base import IGNORE, Vocab
    from unimask.objectives.layout import layout

    tok = Tokenizer.load(args.tokenizer) if args.tokenizer else default_tokenizer()
    obj = build_objective(args.objective)
    vocab = Vocab.from_tokenizer(tok)
    obj.check(vocab)
    ids = tok.encode(args.text)
    ex = obj.apply(ids, np.random.default_rng(args.seed), vocab)
    print(f"objective: {obj!r}")
    print(f"mode: {ex.mode}")
    print(f"input ({len(ids)} tokens): {tok.decode(ids, skip_special=False)!r}")
    print(f"source ({len(ex.source)}): {tok.decode(ex.source, skip_special=False)!r}")
    print(f"target ({len(ex.target)}): {tok.decode(ex.target, skip_special=False)!r}")
    if ex.target_inputs is not None:
        print(f"target inputs ({len(ex.target_inputs)}): {tok.decode(ex.target_inputs, skip_special=False)!r}")
    item = layout(ex, args.arch, start_id=vocab.pad, with_2d=obj.uses_2d_positions)
    n_loss = int((item["labels"] != IGNORE).sum())
    print(f"\nlayout for arch '{args.arch}': {n_loss} tokens carry loss")
    if args.arch == "encoder_decoder":
        print("encoder:")
        for t, i in enumerate(item["input_ids"]):
            print(f"  {t:4d}  {_tok_text(tok, i)}")
        print("decoder:   input -> label")
        for t, (i, y) in enumerate(zip(item["decoder_input_ids"], item["labels"])):
            print(f"  {t:4d}  {_tok_text(tok, i):>20}  ->  {_tok_text(tok, y) if y != IGNORE else '(no loss)'}")
        return 0
    glm = "block_position_ids" in item
    head = "   pos   token                 prefix" + ("  2D position" if glm else "") + "  ->  label"
    print(head)
    for t, (i, y) in enumerate(zip(item["input_ids"], item["labels"])):
        prefix = "yes" if item.get("is_prefix", np.zeros(len(item["input_ids"]), bool))[t] else "   "
        pos2d = f"  ({int(item['position_ids'][t]):3d},{int(item['block_position_ids'][t]):3d})" if glm else ""
        label = _tok_text(tok, y) if y != IGNORE else "(no loss)"
        print(f"  {t:4d}  {_tok_text(tok, i):20}  {prefix:>5}{pos2d:>13}  ->  {label}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from unimask.objectives import OBJECTIVES, build_objective

    for name in OBJECTIVES:
        print(f"{name}: {build_objective(name).config()}")
    return 0
