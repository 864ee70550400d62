"""``build_report``: ``results.json`` -> ``report.html`` (self-contained, English and Chinese),
``report.md``, ``report.zh.md`` and ``figures/*.png``; one section per question of the notes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimask.errors import ConfigError

REPORT_FILES = ("report.html", "report.md", "report.zh.md")


@dataclass
class Report:
    """What ``build_report`` wrote, and the findings it rendered."""

    folder: Path
    html: Path
    markdown: dict[str, Path]
    findings: list[Any]


def build_report(results: dict[str, Any] | str | Path, out: str | Path, *, overwrite: bool = False) -> Report:
    """Write the report of ``results`` (a loaded results dict or a results.json path) into ``out``.

    An existing report in ``out`` is replaced only with ``overwrite``; other files there are never touched.
    """
    from unimask.data.cache import atomic_write_text, check_writable
    from unimask.experiments.findings import all_findings
    from unimask.experiments.report.figures import draw_all
    from unimask.experiments.report.render import render_html, render_markdown
    from unimask.experiments.runner import load_results

    data = results if isinstance(results, dict) else load_results(results)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; choose a folder for the report (--out)")
    existing = [name for name in REPORT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{folder} already holds a report ({existing[0]}); add --overwrite to replace it, or "
                          "choose another --out")
    check_writable(folder, "report folder")
    folder.mkdir(parents=True, exist_ok=True)
    findings = all_findings(data)
    figures = draw_all(data, folder / "figures")
    html_path = folder / "report.html"
    atomic_write_text(html_path, render_html(data, findings, figures))
    markdown = {}
    for lang, name in (("en", "report.md"), ("zh", "report.zh.md")):
        markdown[lang] = folder / name
        atomic_write_text(markdown[lang], render_markdown(data, findings, figures, lang, folder))
    return Report(folder=folder, html=html_path, markdown=markdown, findings=findings)


__all__ = ["REPORT_FILES", "Report", "build_report"]
