"""``unimask serve``: an OpenAI-compatible HTTP API for a model directory (FastAPI + uvicorn).

Endpoints: /v1/models, /v1/completions, /v1/chat/completions (streaming with server-sent events), /health
(liveness), /ready (readiness), /openapi.json (the schema).
Binds to 127.0.0.1 unless --host says otherwise. The chat template is documented in unimask.serving.chat.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
import sys

from unimask.errors import UnimaskError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--model", required=True, help="model directory: config.json, model.safetensors, tokenizer.json")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--name", help="model name in the API (default: the directory's name)")
    p.add_argument("--max-tokens", type=int, default=512, help="most new tokens one request may ask for")
    p.add_argument("--max-concurrent", type=int, default=4, help="requests generating at once")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get 429")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (413 beyond)")
    p.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS",
                   help="most seconds one request may take, queue included (408 or an error event beyond)")
    p.add_argument("--api-key", default=os.environ.get("UNIMASK_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default $UNIMASK_API_KEY; none = open)")
    p.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None,
                   help="put BOS in front of each prompt (default: yes for a causal decoder, as causal_lm trains)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from unimask.serving.app import ServerLimits, create_app
    except ModuleNotFoundError as exc:
        raise UnimaskError(f"serving needs {exc.name}; install it with `pip install 'unimask[serve]'`") from None
    from unimask.serving.engine import LoadedModel

    for name in ("max_tokens", "max_concurrent", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise UnimaskError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_queue < 0:
        raise UnimaskError(f"--max-queue must be >= 0, got {args.max_queue}")
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise UnimaskError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if not 0 <= args.port < 65536:
        raise UnimaskError(f"--port must be in 0..65535, got {args.port}")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # fail with one line, not a uvicorn traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise UnimaskError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                               "choose another --port or --host") from None
    engine = LoadedModel.load(args.model, name=args.name, device=args.device, add_bos=args.add_bos)
    limits = ServerLimits(max_body_bytes=args.max_body_bytes, max_tokens=args.max_tokens,
                          max_concurrent=args.max_concurrent, max_queue=args.max_queue, time_limit_s=args.time_limit,
                          api_key=args.api_key)
    if not _is_loopback(args.host) and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who can reach this port can use the model",
              file=sys.stderr)
    print(f"serving '{engine.name}' ({engine.model.config.arch}, context {engine.context_length}) on "
          f"http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(create_app(engine, limits), host=args.host, port=args.port, log_level=args.log_level)
    return 0
