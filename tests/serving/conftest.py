"""Fixtures: a tiny random model directory (checkpoint + tokenizer) and an OpenAI-compatible server on a free
loopback port, run by uvicorn in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from unimask.serving import LoadedModel
from unimask.serving.tiny import make_tiny_model_dir


@pytest.fixture(scope="session")
def causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # init_std 0.3: logits that depend on the prompt, so different prompts give different text
    return make_tiny_model_dir(tmp_path_factory.mktemp("serve") / "tiny-causal", "tiny-causal", init_std=0.3)


@pytest.fixture(scope="session")
def engine(causal_dir: Path) -> LoadedModel:
    return LoadedModel.load(causal_dir, name="tiny")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving an app in a daemon thread; ``url`` is its base URL."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server_class() -> type[Server]:
    """``Server`` for tests that need a server with other limits (test modules are not a package)."""
    return Server


@pytest.fixture(scope="session")
def server(engine: LoadedModel) -> Iterator[Server]:
    from unimask.serving.app import ServerLimits, create_app

    app = create_app(engine, ServerLimits(max_tokens=64, max_concurrent=4, max_queue=32, max_body_bytes=64 * 1024))
    with Server(app) as s:
        yield s
