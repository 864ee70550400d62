"""The chat page (``unimask.serving.page``) in a real browser: headless Chromium (Debian's ``chromium``, driven
by Playwright) against a live server on loopback. The page must show the model's family and mask, stream a
reply (the text grows over several updates and ends equal to the same request answered non-streamed), show
the server's error messages, work behind an API key, load nothing from elsewhere, and keep the console
clean. Screenshots go to ``artifacts/`` (or ``$UNIMASK_ARTIFACTS``).

Without Chromium the browser tests are skipped, unless ``UNIMASK_REQUIRE_BROWSER=1`` (set by ``.ci/run``):
then a missing browser fails the suite.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from unimask.serving import LoadedModel
from unimask.serving.app import ServerLimits, create_app
from unimask.serving.page import add_chat_page, chat_html, mask_example
from unimask.serving.tiny import make_tiny_model_dir

LIMIT = 64  # the test server's max_tokens
KEY = "test-key-5f1c"
PROMPT = "What does the encoder-decoder read?"
# Collects the reply's text at every DOM update (one MutationObserver callback per rendering of new text).
WATCH_REPLY = """() => {
  window.__replyTexts = [];
  new MutationObserver(() => {
    const all = document.querySelectorAll('.msg.assistant .text');
    if (all.length) window.__replyTexts.push(all[all.length - 1].textContent);
  }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
}"""




@pytest.fixture(scope="module")
def browser(chromium: dict[str, Any]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(**chromium)
        try:
            yield b
        finally:
            b.close()


def _serve(server_class: type, engine: LoadedModel, api_key: str | None = None) -> Any:
    app = create_app(engine, ServerLimits(max_tokens=LIMIT, max_concurrent=2, max_queue=4, api_key=api_key))
    add_chat_page(app, engine)
    return server_class(app)


class Watched:
    """A page with its console, page errors and requests recorded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.url = url
        self.page = browser.new_page(viewport={"width": 1100, "height": 800}, locale="en-US")
        self.problems: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url[:80]}"))
        self.page.on("request", lambda r: self.requests.append((r.url, r.headers)))

    def open(self) -> Any:
        response = self.page.goto(self.url + "/")
        assert response is not None and response.status == 200
        return response

    def set(self, **fields: object) -> None:
        for name, value in fields.items():
            self.page.fill(f"#{name}", str(value))

    def send(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")
        self.page.locator("body[data-busy='']").wait_for(state="attached", timeout=20_000)

    def check(self, *allowed_statuses: int) -> None:
        """No console errors or warnings but the browser's own note of a refused request whose status a test
        provoked; every request went to the server itself."""
        allowed = [f"Failed to load resource: the server responded with a status of {s}" for s in allowed_statuses]
        left = [p for p in self.problems if not any(a in p for a in allowed)]
        assert not left, left
        assert self.requests and all(u.startswith(self.url + "/") for u, _ in self.requests), self.requests

    def close(self) -> None:
        self.page.close()


def _wait_text(page: Any, selector: str, text: str | re.Pattern[str]) -> None:
    """Wait until ``selector`` shows ``text`` (Playwright's own wait: the page's CSP forbids eval, which
    ``wait_for_function`` needs)."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(text, timeout=10_000)


def _cells(page: Any) -> tuple[int, int, int]:
    """(masks drawn, cells that may attend, all cells) of the mask panel."""
    return (page.locator("#masks svg").count(), page.locator("#masks rect.on").count(),
            page.locator("#masks rect").count())


def _chat(url: str, settings: dict[str, Any], key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=30,
                   json={"messages": [{"role": "user", "content": PROMPT}], **settings})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


# Without a browser ------------------------------------------------------------------------------------------
def test_page_is_self_contained_and_info_describes_the_model(engine: LoadedModel, server_class: type) -> None:
    html = chat_html().decode()
    # no resource from elsewhere: the only URL is the SVG namespace (a name, never fetched)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(?!data:)", html)
    with _serve(server_class, engine, api_key=KEY) as s:
        page = httpx.get(s.url + "/")  # no key: the page itself is open
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.content == chat_html()
        head = httpx.head(s.url + "/")
        assert head.status_code == 200 and head.content == b""
        refused = httpx.get(s.url + "/v1/unimask/info")  # the API is not
        assert refused.status_code == 401 and "API key" in refused.json()["error"]["message"]
        assert httpx.post(s.url + "/", json={}).status_code == 405
        info = httpx.get(s.url + "/v1/unimask/info", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["arch"] == "causal" and info["family"] == "causal decoder" and info["name"] == "tiny"
    assert info["context_length"] == engine.context_length and info["max_tokens"] == min(LIMIT, engine.context_length)
    assert info["mask_example"] == mask_example("causal")
    (mask,) = info["mask_example"]["masks"]
    assert mask["allowed"] == [[int(k <= q) for k in range(6)] for q in range(6)]  # the lower triangle


def test_mask_examples_of_every_family() -> None:
    prefix = mask_example("prefix")["masks"][0]["allowed"]
    assert prefix == [[int(k < 3 or k <= q) for k in range(6)] for q in range(6)]  # a 3-token bidirectional block
    enc, dec, cross = mask_example("encoder_decoder")["masks"]
    assert enc["allowed"] == [[1] * 3] * 3 and enc["rows"] == enc["cols"] == ["x1", "x2", "x3"]
    assert dec["allowed"] == [[int(k <= q) for k in range(3)] for q in range(3)] and dec["rows"] == ["y1", "y2", "y3"]
    assert cross["allowed"] == [[1] * 3] * 3 and (cross["rows"], cross["cols"]) == (dec["rows"], enc["rows"])


# In Chromium ------------------------------------------------------------------------------------------------
def test_chat_page_streams_a_reply_and_shows_errors(browser: Any, engine: LoadedModel, server_class: type,
                                                    artifacts: Path) -> None:
    settings = {"temperature": 0, "top_p": 1, "max_tokens": 40, "seed": 11}
    # pace the tiny model (30 ms a token): faster, the whole stream can arrive in one network read, which
    # the page rightly renders once, and streaming could not be told from a single reply
    pace = engine.model.register_forward_hook(lambda *_: time.sleep(0.03))
    with _serve(server_class, engine) as s:
        w = Watched(browser, s.url)
        try:
            w.open()
            page = w.page
            _wait_text(page, "#arch", "causal")
            assert page.locator("#family").inner_text() == "causal decoder"
            assert page.locator("#model-name").inner_text() == "tiny"
            assert _cells(page) == (1, 21, 36)  # x1..x3 y1..y3, each sees itself and what came before
            w.set(**settings)
            page.evaluate(WATCH_REPLY)
            w.send(PROMPT)
            texts = [t for t in page.evaluate("window.__replyTexts") if t]
            final = page.locator(".msg.assistant .text").last.text_content()
            expected = _chat(s.url, settings)
            assert expected and final == expected
            updates = list(dict.fromkeys(texts))  # distinct renderings, in order
            assert len(updates) >= 2, updates  # streamed: the reply grew on screen, not in one piece
            assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(updates)), updates
            assert updates[-1] == final
            assert page.locator(".msg.assistant").last.get_attribute("data-finish") in ("stop", "length")
            assert not page.locator("#error").is_visible()
            page.screenshot(path=str(artifacts / "chat-reply.png"))

            w.set(max_tokens=100_000)  # over the server's limit: the server's own message is shown
            w.send("and once more")
            error = page.locator("#error")
            assert error.is_visible()
            assert error.inner_text() == f"max_tokens 100000 is over this server's limit of {LIMIT}"
            assert page.locator(".msg").count() == 2  # the refused turn left nothing behind ...
            assert page.locator("#input").input_value() == "and once more"  # ... but its text, to fix and resend
            page.screenshot(path=str(artifacts / "chat-error.png"))
            w.set(max_tokens=8)  # the conversation goes on
            w.send("and once more")
            assert not error.is_visible() and page.locator(".msg").count() == 4
            w.check(400)
        finally:
            w.close()
            pace.remove()


def test_chat_page_behind_an_api_key(browser: Any, engine: LoadedModel, server_class: type) -> None:
    settings = {"temperature": 0, "max_tokens": 12}
    with _serve(server_class, engine, api_key=KEY) as s:
        w = Watched(browser, s.url)
        try:
            w.open()  # the page loads without the key
            page = w.page
            error = page.locator("#error")
            error.wait_for(state="visible", timeout=10_000)
            assert "API key" in error.inner_text() and page.locator("#arch").inner_text() != "causal"
            w.set(api_key="wrong")
            page.dispatch_event("#api_key", "change")
            _wait_text(page, "#error", re.compile("wrong API key"))
            w.set(api_key=KEY)
            page.dispatch_event("#api_key", "change")
            _wait_text(page, "#arch", "causal")
            assert not error.is_visible()
            w.set(**settings)
            w.send(PROMPT)
            assert page.locator(".msg.assistant .text").last.text_content() == _chat(s.url, settings, KEY)
            api = [h for u, h in w.requests if "/v1/" in u]
            assert api and api[-1].get("authorization") == f"Bearer {KEY}"
            assert "authorization" not in dict(w.requests[0][1])  # opening the page needs no key
            page.reload()  # the key is kept for the tab
            _wait_text(page, "#arch", "causal")
            w.check(401)
        finally:
            w.close()


@pytest.mark.parametrize(("preset", "arch", "cells"), [("tiny-prefix", "prefix", (1, 24, 36)),
                                                       ("tiny-encdec", "encoder_decoder", (3, 24, 27))])
def test_mask_panel_of_the_other_families(browser: Any, server_class: type, tmp_path: Path, preset: str, arch: str,
                                          cells: tuple[int, int, int], artifacts: Path) -> None:
    engine = LoadedModel.load(make_tiny_model_dir(tmp_path / preset, preset), name=preset)
    with _serve(server_class, engine) as s:
        w = Watched(browser, s.url)
        try:
            w.open()
            _wait_text(w.page, "#arch", arch)
            assert _cells(w.page) == cells
            assert w.page.locator("#mask-note").inner_text().startswith(
                {"prefix": "Prefix decoder", "encoder_decoder": "Encoder-decoder"}[arch])
            w.set(temperature=0, max_tokens=6)
            w.send(PROMPT)
            assert w.page.locator(".msg.assistant").count() == 1 and not w.page.locator("#error").is_visible()
            w.page.screenshot(path=str(artifacts / f"chat-{arch}.png"))
            w.check()
        finally:
            w.close()
