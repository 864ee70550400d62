"""A chat page for ``unimask serve``: ``GET /`` answers one self-contained HTML file (``static/chat.html``:
plain HTML, CSS and JavaScript, no build step, nothing loaded from elsewhere), and ``GET /v1/unimask/info``
tells it the model's family, its shape and a small example of its attention mask.

The page streams replies from the server's own ``POST /v1/chat/completions`` (``fetch`` and a
``ReadableStream`` reader over its server-sent events), sends the API key it is given as
``Authorization: Bearer``, and shows the server's error message when a request is refused.

The page itself is answered without the API key (``/`` is one of the app's open paths: a browser cannot send
a header when it opens a URL, and the page holds no data); every API call it makes carries the key,
``/v1/unimask/info`` included.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from unimask.models.masks import family_masks
from unimask.serving.engine import LoadedModel

FAMILIES = {"causal": "causal decoder", "prefix": "prefix decoder", "encoder_decoder": "encoder-decoder"}
EXAMPLE_SOURCE, EXAMPLE_TARGET = 3, 3  # the mask example: a 3-token prompt and a 3-token reply
# Nothing but the page itself and its own origin: inline script and style, API calls to this server.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}


@lru_cache(maxsize=1)
def chat_html() -> bytes:
    """The page (a package resource)."""
    return files("unimask.serving").joinpath("static/chat.html").read_bytes()


def mask_example(arch: str, source_len: int = EXAMPLE_SOURCE, target_len: int = EXAMPLE_TARGET) -> dict[str, Any]:
    """The family's masks for a short prompt and reply, drawn by the builders the model uses: one entry per
    mask with its query (row) and key (column) labels and ``allowed[q][k]`` (1 = ``q`` may attend to ``k``).
    Prompt tokens are ``x1..``, reply tokens ``y1..``."""
    src = [f"x{i + 1}" for i in range(source_len)]
    tgt = [f"y{i + 1}" for i in range(target_len)]
    masks = []
    for name, mask in family_masks(arch, source_len, target_len).items():
        if "source + target" in name:  # decoder-only: one sequence, prompt then reply
            rows, cols = src + tgt, src + tgt
        elif name.startswith("encoder"):
            rows, cols = src, src
        else:  # the decoder's own tokens ask; cross-attention looks at the encoder's
            rows, cols = tgt, src if "cross" in name else tgt
        masks.append({"name": name, "rows": rows, "cols": cols, "allowed": mask.int().tolist()})
    return {"source_len": source_len, "target_len": target_len, "masks": masks}


def model_info(engine: LoadedModel, max_tokens: int | None = None) -> dict[str, Any]:
    """What the page shows beside the chat: name, family, shape, limits and the mask example."""
    config = engine.model.config
    arch = str(config.arch)
    limit = engine.context_length if max_tokens is None else min(max_tokens, engine.context_length)
    shape = {"n_layers": config.n_layers, "d_model": config.d_model, "n_heads": config.n_heads,
             "vocab_size": config.vocab_size, "position": config.position}
    if arch == "encoder_decoder":
        shape["n_encoder_layers"] = config.n_encoder_layers or config.n_layers
    return {"name": engine.name, "arch": arch, "family": FAMILIES.get(arch, arch),
            "context_length": engine.context_length, "max_tokens": limit, **shape,
            "mask_example": mask_example(arch)}


def add_chat_page(app: FastAPI, engine: LoadedModel) -> None:
    """Serve the chat page at ``GET /`` (open: ``/`` is among the app's paths answered without the API key)
    and ``GET /v1/unimask/info`` (behind the key like every API route)."""
    limits = getattr(app.state, "limits", None)
    info = model_info(engine, getattr(limits, "max_tokens", None))

    @app.get("/v1/unimask/info")
    async def unimask_info() -> dict[str, Any]:
        """The model's name, family (``arch``), shape, context length, this server's ``max_tokens`` limit and
        its attention masks for a 3-token prompt and a 3-token reply."""
        return info

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def chat_page() -> Response:
        """The chat page: one HTML file with its CSS and JavaScript inline."""
        return Response(chat_html(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


__all__ = ["add_chat_page", "chat_html", "mask_example", "model_info"]
