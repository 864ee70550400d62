"""``unimask masks``: the three families' attention masks as text and as a PNG figure."""

from __future__ import annotations

import argparse
from pathlib import Path

from unimask.errors import UnimaskError

DEFAULT_OUT = "out/masks/masks.png"  # analysis output goes under out/, as the README says


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("masks", help="show the three families' attention masks (terminal and PNG)")
    p.add_argument("--source-len", type=int, default=4, help="length of the input (source / prefix)")
    p.add_argument("--target-len", type=int, default=3, help="length of the output (target)")
    p.add_argument("--out", default=DEFAULT_OUT, help="PNG file (or a folder for masks.png) to write ('' for none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from unimask.analysis.mask_plots import mask_text, plot_masks
    from unimask.data.cache import check_writable, ensure_dir

    if args.source_len <= 0 or args.target_len <= 0:
        raise UnimaskError("--source-len and --target-len must be positive")
    if args.source_len + args.target_len > 64:
        raise UnimaskError("--source-len + --target-len must be at most 64 to stay readable")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            out = out / "masks.png"
        elif out.suffix.lower() != ".png":
            raise UnimaskError(f"--out {out}: give a .png file name (or '' for no figure)")
        check_writable(out.parent, "folder of --out")
    print(mask_text(args.source_len, args.target_len))
    if out is not None:
        ensure_dir(out.parent, "folder of --out")
        try:
            path = plot_masks(args.source_len, args.target_len, out)
        except OSError as exc:
            raise UnimaskError(f"{out}: cannot write the figure ({exc.strerror or exc}); choose another --out") \
                from None
        print(f"wrote {path}")
    return 0
