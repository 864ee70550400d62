"""``unimask tour``: a tour of the foundation (masks, a forward pass and cached decoding per family).

Shows the three families' masks, runs a forward pass of a tiny model of each family and decodes from it
with the KV cache, checking the cached tokens against decoding without the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from unimask.commands._args import seed

    p = sub.add_parser("tour", help="masks, a forward pass and cached generation for each family")
    p.add_argument("--out", default="out/tour", help="folder for the figure and checkpoints")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random models and their sampling")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from unimask import build_model, load_model, preset
    from unimask.analysis.mask_plots import mask_text, plot_masks
    from unimask.data.cache import ensure_dir

    out = ensure_dir(Path(args.out), "--out folder")
    print("== The three families differ first of all in their attention mask ==\n")
    print(mask_text(4, 3))
    figure = plot_masks(4, 3, out / "masks.png")
    print(f"\n(figure: {figure})\n")
    torch.manual_seed(args.seed)
    prompts = [[5, 17, 42, 9, 33], [7, 8, 99]]
    print("== A tiny random model of each family: forward pass and KV-cache decoding ==")
    for name in ("tiny-causal", "tiny-prefix", "tiny-encdec"):
        config = preset(name)
        model = build_model(config).eval()
        ids = torch.tensor([prompts[0]])
        with torch.no_grad():
            if config.arch == "encoder_decoder":
                logits = model(ids, decoder_input_ids=torch.tensor([[config.start_token_id]])).logits
            else:
                logits = model(ids, prefix_lengths=torch.tensor([ids.shape[1]])).logits
        start = time.perf_counter()
        cached = model.generate(prompts, max_new_tokens=12, do_sample=True, top_k=50, seed=args.seed)
        took = time.perf_counter() - start
        plain = model.generate(prompts, max_new_tokens=12, do_sample=True, top_k=50, seed=args.seed, use_cache=False)
        same = torch.equal(cached, plain)
        path = model.save(out / name)
        reloaded = load_model(path)
        with torch.no_grad():
            if config.arch == "encoder_decoder":
                again = reloaded(ids, decoder_input_ids=torch.tensor([[config.start_token_id]])).logits
            else:
                again = reloaded(ids, prefix_lengths=torch.tensor([ids.shape[1]])).logits
        print(f"\n{name} (arch={config.arch}, {model.num_parameters():,} parameters)")
        print(f"  forward: logits {tuple(logits.shape)}; save/load identical: {torch.equal(logits, again)}")
        print(f"  sampled with KV cache ({took * 1000:.0f} ms): {cached.tolist()}")
        print(f"  same tokens without the cache: {same}")
    print("\nNext: `unimask --help` lists every command.")
    return 0
