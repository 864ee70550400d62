"""``unimask serve`` as a user runs it: a subprocess on a free loopback port that answers the openai client;
a second one on the same port fails with one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from unimask.cli import main


def test_serve_command_answers_and_port_clash_is_one_line(causal_dir: Path, capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "unimask", "serve", "--model", str(causal_dir), "--port", str(port),
           "--name", "tiny", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = client.completions.create(model="tiny", prompt="Hi", max_tokens=3, temperature=0)
        assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1
        assert main(cmd[3:]) == 2  # the same port again: one line, exit 2, before loading anything
        err = capsys.readouterr().err
        assert "cannot listen" in err and len(err.strip().splitlines()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
