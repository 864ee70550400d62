"""Generation settings get the same verdict from ``unimask generate`` and from the server, because both check
them with ``SamplingParams``: a refused value is one line on stderr with exit code 2, and a 400 with OpenAI's
error body naming the field; an accepted one (a tiny temperature: exactly its greedy limit) generates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from unimask.cli import main

Server = object  # annotation only: the fixtures hand out conftest.Server

NAN, INF = float("nan"), float("inf")
# (settings, refused?) -- settings use the server's names; the CLI's flags are derived from them
CASES: list[tuple[dict, bool]] = [
    ({"temperature": 1e-300}, False),
    ({"temperature": 5e-324, "seed": 1}, False),
    ({"temperature": 2.0, "seed": 2}, False),
    ({"temperature": -1.0}, True),
    ({"temperature": INF}, True),
    ({"temperature": NAN}, True),
    ({"temperature": 2.5}, True),
    ({"top_p": 0.0}, True),
    ({"top_p": 1.5}, True),
    ({"top_p": NAN}, True),
    ({"top_p": 1e-300, "temperature": 0.9}, False),
    ({"top_k": -1}, True),
    ({"top_k": 10**30, "temperature": 0.9}, False),
    ({"repetition_penalty": 0.0}, True),
    ({"repetition_penalty": 1e-300}, True),
    ({"repetition_penalty": 1e-300, "temperature": 0.9}, True),
    ({"repetition_penalty": INF}, True),
    ({"repetition_penalty": NAN}, True),
    ({"repetition_penalty": 100.0}, True),
    ({"repetition_penalty": 0.01, "temperature": 0.9}, False),
    ({"repetition_penalty": 10.0, "temperature": 0.9}, False),
    ({"max_tokens": 0}, True),
    ({"max_tokens": -1}, True),
    ({"max_tokens": 10**12}, True),
    ({"stop": [""]}, True),
    ({"stop": ["a", ""]}, True),
    ({"stop": ["a", "b", "c", "d", "e"]}, True),
    ({"stop": ["a", "b", "c", "d"]}, False),
    ({"seed": 2**64}, True),
    ({"seed": -(2**63) - 1}, True),
    ({"seed": 2**64 - 1, "temperature": 0.5}, False),
]
FLAGS = {"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k", "max_tokens": "--max-new-tokens",
         "repetition_penalty": "--repetition-penalty", "seed": "--seed"}


def _id(case: tuple[dict, bool]) -> str:
    return ",".join(f"{k}={v!r}"[:24] for k, v in case[0].items()) + ("-refused" if case[1] else "-ok")


def _cli_args(settings: dict) -> list[str]:
    out: list[str] = []
    for key, value in settings.items():
        if key == "stop":
            for s in value:
                out.append(f"--stop={s}")
        else:
            out += [FLAGS[key], repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)]
    return out


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_cli_and_server_agree(case: tuple[dict, bool], causal_dir: Path, server: Server,
                              capsys: pytest.CaptureFixture) -> None:
    settings, refused = case
    body = {"model": "tiny", "prompt": "The quick", "max_tokens": 3, "temperature": 0, **settings}
    r = httpx.post(server.url + "/v1/completions", content=json.dumps(body),  # type: ignore[attr-defined]
                   headers={"content-type": "application/json"}, timeout=30)
    cli = {"max_tokens": 3, "temperature": 0.0, **settings}
    code = main(["generate", "--model", str(causal_dir), "--prompt", "The quick", *_cli_args(cli)])
    out, err = capsys.readouterr()
    if refused:
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert out == ""
    else:
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")
        assert code == 0, err


@pytest.mark.parametrize("extra", [{"n": 9}, {"n": 0}, {"presence_penalty": 2.5}, {"frequency_penalty": -3.0},
                                   {"logprobs": 6}, {"stop": 7}, {"temperature": "hot"}, {"max_tokens": 1.5}],
                         ids=str)
def test_server_only_settings_are_400(extra: dict, server: Server) -> None:
    body = {"model": "tiny", "prompt": "Hi", "max_tokens": 2, **extra}
    r = httpx.post(server.url + "/v1/completions", json=body, timeout=30)  # type: ignore[attr-defined]
    assert r.status_code == 400 and r.json()["error"]["message"], r.text
