"""Pictures of the three families' attention masks (terminal text and matplotlib PNG)."""

from __future__ import annotations

from pathlib import Path

from unimask.models.masks import family_masks, render_text

FAMILIES = (("causal", "causal decoder (GPT, LLaMA)"), ("prefix", "prefix decoder (GLM, U-PaLM)"),
            ("encoder_decoder", "encoder-decoder (T5, BART)"))


def _labels(source_len: int, target_len: int) -> tuple[list[str], list[str]]:
    return [f"x{i + 1}" for i in range(source_len)], [f"y{i + 1}" for i in range(target_len)]


def _axes(name: str, src: list[str], tgt: list[str]) -> tuple[list[str], list[str]]:
    """Row (query) and column (key) labels of one named mask."""
    if "source + target" in name:
        return src + tgt, src + tgt
    rows = src if name.startswith("encoder") else tgt
    cols = src if name.startswith("encoder") or "cross" in name else tgt
    return rows, cols


def mask_text(source_len: int, target_len: int) -> str:
    """All masks of the three families as text ('■' = may attend; rows are queries, columns keys)."""
    src, tgt = _labels(source_len, target_len)
    parts = []
    for arch, title in FAMILIES:
        for name, mask in family_masks(arch, source_len, target_len).items():
            rows, cols = _axes(name, src, tgt)
            parts.append(f"{title}: {name}\n{render_text(mask, rows, [c[1:] for c in cols])}")
    return "\n\n".join(parts)


def plot_masks(source_len: int, target_len: int, path: Path) -> Path:
    """A PNG with one panel per mask; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt = _labels(source_len, target_len)
    panels = []
    for arch, title in FAMILIES:
        for name, mask in family_masks(arch, source_len, target_len).items():
            panels.append((title, name, mask))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (title, name, mask) in zip(axes, panels):
        ax.imshow(mask.int().numpy(), cmap="Blues", vmin=0, vmax=1.3)
        rows, cols = _axes(name, src, tgt)
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{title}\n{name}", fontsize=8)
        ax.set_xlabel("key (attended to)", fontsize=7)
        ax.set_ylabel("query", fontsize=7)
    fig.suptitle("Attention masks of the three LLM families (blue = may attend)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
