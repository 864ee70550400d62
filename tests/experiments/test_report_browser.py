"""The report page in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright) loads
report.html; every section and figure must load, both languages must be there, and the console must stay
clean. Screenshots are kept in ``artifacts/`` (or ``$UNIMASK_ARTIFACTS``).

Without Chromium the test is skipped, unless ``UNIMASK_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which
installs it): then a missing browser fails the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unimask.experiments.report.text import QUESTIONS, UI


def test_report_page_in_headless_chromium(smoke_report: Path, chromium: dict, artifacts: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(**chromium)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400}, locale="en-US")
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto((smoke_report / "report.html").resolve().as_uri())
            page.wait_for_load_state("load")
            assert page.evaluate("document.body.dataset.lang") == "en"
            for q, title in QUESTIONS.items():
                section = page.locator(f"section#q{q}")
                assert section.count() == 1, q
                assert section.locator("h2").inner_text().strip().endswith(title["en"])
                assert section.locator("h2").is_visible()
                assert section.locator(".finding").count() >= 1
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            assert len(images) >= 10
            assert all(done and width > 0 for done, width, _ in images), [alt for d, w, alt in images if not w]
            assert page.locator("h1 [lang=en]").is_visible() and not page.locator("h1 [lang=zh]").is_visible()
            page.screenshot(path=str(artifacts / "report-en.png"))
            page.click("#switch")
            assert page.evaluate("document.body.dataset.lang") == "zh"
            assert page.locator("h1 [lang=zh]").inner_text() == UI["title"]["zh"]
            assert page.locator("h1 [lang=zh]").is_visible() and not page.locator("h1 [lang=en]").is_visible()
            assert page.locator("section#q5 h2").inner_text().strip().endswith(QUESTIONS["5"]["zh"])
            page.screenshot(path=str(artifacts / "report-zh.png"), full_page=False)
            page.reload()  # the choice of language is remembered
            assert page.evaluate("document.body.dataset.lang") == "zh"
        finally:
            browser.close()
    assert not problems, problems
    assert (artifacts / "report-en.png").stat().st_size > 10_000
