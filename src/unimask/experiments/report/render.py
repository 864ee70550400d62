"""The report as one self-contained HTML page (figures embedded, a language switch) and as Markdown
(``report.md`` in English, ``report.zh.md`` in Chinese, figures beside them)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from unimask.experiments.findings import Finding, learned, rows_of
from unimask.experiments.report.text import (
    CLAIMS,
    FIGURES,
    LABELS,
    LANGS,
    MEASURED,
    NOTES,
    QUESTIONS,
    RAN,
    RULES,
    UI,
    VERDICT,
    t,
)

VERDICT_CLASS = {"supported": "ok", "contradicted": "bad", "inconclusive": "meh", "not measured": "none"}


def claim_values(results: dict[str, Any]) -> dict[str, str]:
    """Placeholder values of the claims: the notes' own numbers, from ``results["facts"]["notes"]``."""
    notes = results["facts"]["notes"]
    comp = notes["composite"]
    return {"usd": f"${notes['gpt3_cost_usd']:,.0f}", "t": f"{notes['gpt3_co2_t']:,.0f} t",
            "threshold": f"{notes['large_threshold']:,.0f}", "k": str(comp["k"]), "p0": f"{100 * comp['p0']:.0f}%",
            "p1": f"{100 * comp['p1']:.0f}%", "c0": f"{100 * comp['c0']:.1f}%", "c1": f"{100 * comp['c1']:.0f}%"}


def ran_values(results: dict[str, Any]) -> dict[str, str]:
    s = results["study"]
    timing = results.get("timing") or {}
    return {"src": str(s["source_tokens"]), "cont": str(s["continuation_tokens"]),
            "repeats": str(timing.get("repeats", s["timing_repeats"])), "k": str(s["few_shot"])}


def setup_values(results: dict[str, Any]) -> dict[str, str]:
    s, c = results["study"], results["corpus"]
    return {"study": s["name"], "rows": str(len(s["rows"])), "seeds": str(s["seeds"]),
            "budget": f"{s['budget_flops']:.2e}",
            "text_docs": f"{c['text_documents']:,}", "task_docs": f"{c['task_documents']:,}",
            "vocab": f"{c['vocab_size']:,}", "precision": results["precision"]["used"],
            "device": results["machine"]["device"]}


def provenance_values(results: dict[str, Any]) -> dict[str, str]:
    m = results["machine"]
    return {"version": results["unimask_version"], "commit": (results.get("git_commit") or "unknown")[:12],
            "created": results["created"], "seconds": f"{results['seconds']:.0f}",
            "machine": f"{m['processor']}, {m['cpu_count']} cores, {m['cpu_capability']}" + (
                f", {m['gpu']}" if m.get("gpu") else ""),
            "torch": m["torch"], "workers": str(m["workers"]), "threads": str(m["threads_per_worker"]),
            "command": results["command"]}


def label(key: str, lang: str) -> str:
    if key in LABELS:
        return LABELS[key][lang]
    return key.split(":", 1)[-1]


# HTML ------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","PingFang SC","Microsoft YaHei",sans-serif;
max-width:1040px;margin:2em auto;padding:0 1em;line-height:1.5;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .5em;
vertical-align:top;text-align:left}th{background:#f4f4f4}
.v{font-weight:600;padding:.1em .45em;border-radius:.3em;white-space:nowrap}.ok{background:#d8f3dc}
.bad{background:#ffd6d6}.meh{background:#fff1c1}.none{background:#e9ecef}
.claim{font-style:italic;border-left:3px solid #999;padding-left:.6em}figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:.05em .3em}
#switch{position:fixed;top:.6em;right:.6em;padding:.3em .8em;font-size:1em;cursor:pointer}
body[data-lang=en] [lang=zh]{display:none}body[data-lang=zh] [lang=en]{display:none}
.finding{margin:1em 0 1.6em}.muted{color:#666;font-size:.9em}pre{white-space:pre-wrap;background:#f8f8f8;
padding:.5em;font-size:.85em}
"""

_JS = """
(function(){
  var b=document.body, key='unimask-report-lang';
  var saved=null; try{saved=localStorage.getItem(key);}catch(e){}
  var lang=saved||((navigator.language||'en').toLowerCase().indexOf('zh')===0?'zh':'en');
  function set(l){b.setAttribute('data-lang',l);document.documentElement.lang=l;
    try{localStorage.setItem(key,l);}catch(e){}}
  set(lang);
  document.getElementById('switch').addEventListener('click',function(){
    set(b.getAttribute('data-lang')==='en'?'zh':'en');});
})();
"""


def _both(table: dict, key: str, tag: str = "span", **values: object) -> str:
    return "".join(f'<{tag} lang="{lang}">{html.escape(t(table, key, lang, **values))}</{tag}>' for lang in LANGS)


def _ui(key: str, tag: str = "span", **values: object) -> str:
    return _both(UI, key, tag, **values)


def _verdict_html(verdict: str) -> str:
    cls = VERDICT_CLASS.get(verdict, "none")
    return f'<span class="v {cls}">' + _both(VERDICT, verdict) + "</span>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _finding_html(f: Finding, figures: dict[str, Path], results: dict[str, Any]) -> str:
    cv, rv = claim_values(results), ran_values(results)
    parts = [f'<div class="finding" id="f-{f.id}">',
             f'<p class="claim"><b>{_ui("claim")}:</b> {_both(CLAIMS, f.id, **cv)}</p>',
             f'<p><b>{_ui("ran")}:</b> {_both(RAN, f.id, **rv)}</p>']
    if f.numbers:
        rows = "".join(f"<tr><td>{_label_both(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in f.numbers)
        parts.append(f"<table>{rows}</table>")
    if f.id in MEASURED and f.values:
        parts.append(f'<p><b>{_ui("measured")}:</b> {_both(MEASURED, f.id, **f.values)}</p>')
    if f.id in NOTES:
        parts.append(f'<p class="muted">{_both(NOTES, f.id)}</p>')
    parts.append(f'<p><b>{_ui("verdict")}:</b> {_verdict_html(f.verdict)} <span class="muted">'
                 f'{_ui("rule")}: {_both(RULES, f.id)}</span></p>')
    for name in f.figures:
        if name in figures:
            parts.append(f'<figure id="fig-{f.id}-{name}">{_img(figures[name], FIGURES[name]["en"])}'
                         f"<figcaption>{_both(FIGURES, name)}</figcaption></figure>")
    parts.append(f'<p><b>{_ui("reproduce")}:</b> <code>{html.escape(f.command)}</code></p></div>')
    return "\n".join(parts)


def _label_both(key: str) -> str:
    return "".join(f'<span lang="{lang}">{html.escape(label(key, lang))}</span>' for lang in LANGS)


def _learned_html(results: dict[str, Any]) -> str:
    info = learned(results)
    runs = rows_of(results)
    head = (f"<tr><th>{_ui('row')}</th><th>{_ui('params')}</th><th>{_ui('steps')}</th><th>{_ui('text_loss')}</th>"
            f"<th>{_ui('accuracy')}</th><th>{_ui('own_loss')}</th><th></th></tr>")
    body = ""
    for name, v in info.items():
        ok = _ui("learned_ok") if v["ok"] else _ui("learned_no")
        body += (f"<tr><td>{_label_both('row:' + name)}</td><td>{runs[name][0]['params']:,}</td>"
                 f"<td>{runs[name][0]['steps']:,}</td><td>{v['text_loss']:.3f}</td><td>{100 * v['accuracy']:.1f}%</td>"
                 f"<td>{v['own_loss']:.3f}</td><td>{ok}</td></tr>")
    base = results["baselines"]
    intro = _ui("learned_intro", unigram=f"{base['unigram_text_loss']:.3f}",
                chance=f"{100 * base['chance_accuracy']:.0f}%")
    return (f"<h2 id='learned'>{_ui('learned')}</h2><p>" + intro
            + f"</p><table>{head}{body}</table>")


def _samples_html(results: dict[str, Any]) -> str:
    out = [f"<h2 id='samples'>{_ui('samples')}</h2>"]
    for name, runs in rows_of(results).items():
        samples = runs[0]["eval"].get("samples", [])
        text = "\n".join(f"{s['prompt']!r} -> {s['output']!r}" for s in samples)
        out.append(f"<h3>{_label_both('row:' + name)}</h3><pre>{html.escape(text)}</pre>")
    return "\n".join(out)


def render_html(results: dict[str, Any], findings: list[Finding], figures: dict[str, Path]) -> str:
    cv = claim_values(results)
    table = [f"<tr><th>#</th><th>{_ui('question')}</th><th>{_ui('claim')}</th><th>{_ui('verdict')}</th>"
             f"<th>{_ui('key')}</th></tr>"]
    for f in findings:
        table.append(f'<tr><td><a href="#q{f.question}">Q{f.question}</a></td><td>{_both(QUESTIONS, str(f.question))}'
                     f'</td><td><a href="#f-{f.id}">{_both(CLAIMS, f.id, **cv)}</a></td><td>{_verdict_html(f.verdict)}'
                     f"</td><td>{html.escape(f.key_number)}</td></tr>")
    sections = []
    for q in sorted(QUESTIONS, key=int):
        body = "\n".join(_finding_html(f, figures, results) for f in findings if str(f.question) == q)
        sections.append(f'<section id="q{q}"><h2>Q{q}. {_both(QUESTIONS, str(q))}</h2>\n{body}</section>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(UI['title']['en'])}</title><style>{_CSS}</style></head>
<body data-lang="en">
<button id="switch" type="button">{_ui('language')}</button>
<h1>{_ui('title')}</h1><p class="muted">{_ui('subtitle')}</p>
<p>{_ui('setup_text', **setup_values(results))}</p>
<h2 id="verdicts">{_ui('verdicts')}</h2>
<table>{''.join(table)}</table>
<p class="muted">{_ui('rule_general')}</p>
{_learned_html(results)}
{''.join(sections)}
{_samples_html(results)}
<h2 id="provenance">{_ui('provenance')}</h2><p class="muted">{_ui('provenance_text', **provenance_values(results))}</p>
<script>{_JS}</script>
</body></html>
"""


# Markdown --------------------------------------------------------------------------------------------------

def verdict_table_markdown(results: dict[str, Any], findings: list[Finding], lang: str = "en") -> str:
    cv = claim_values(results)
    lines = [f"| Q | {UI['claim'][lang]} | {UI['verdict'][lang]} | {UI['key'][lang]} |", "|---|---|---|---|"]
    for f in findings:
        lines.append(f"| Q{f.question} | {t(CLAIMS, f.id, lang, **cv)} | {VERDICT[f.verdict][lang]} | {f.key_number} |")
    return "\n".join(lines)


def render_markdown(results: dict[str, Any], findings: list[Finding], figures: dict[str, Path], lang: str,
                    folder: Path) -> str:
    cv, rv = claim_values(results), ran_values(results)
    out = [f"# {UI['title'][lang]}", "", UI["subtitle"][lang], "", t(UI, "setup_text", lang, **setup_values(results)),
           "", f"## {UI['verdicts'][lang]}", "", verdict_table_markdown(results, findings, lang), "",
           UI["rule_general"][lang], ""]
    info = learned(results)
    out += [f"## {UI['learned'][lang]}", "", t(UI, "learned_intro", lang,
                                                 unigram=f"{results['baselines']['unigram_text_loss']:.3f}",
                                                 chance=f"{100 * results['baselines']['chance_accuracy']:.0f}%"), "",
            f"| {UI['row'][lang]} | {UI['text_loss'][lang]} | {UI['accuracy'][lang]} | {UI['own_loss'][lang]} | |",
            "|---|---|---|---|---|"]
    for name, v in info.items():
        ok = UI["learned_ok"][lang] if v["ok"] else UI["learned_no"][lang]
        out.append(f"| {label('row:' + name, lang)} | {v['text_loss']:.3f} | {100 * v['accuracy']:.1f}% | "
                   f"{v['own_loss']:.3f} | {ok} |")
    out.append("")
    for q in sorted(QUESTIONS, key=int):
        out += [f"## Q{q}. {QUESTIONS[q][lang]}", ""]
        for f in (f for f in findings if str(f.question) == q):
            out += [f"**{UI['claim'][lang]}:** _{t(CLAIMS, f.id, lang, **cv)}_", "",
                    f"**{UI['ran'][lang]}:** {t(RAN, f.id, lang, **rv)}", ""]
            if f.numbers:
                out += ["| | |", "|---|---|"] + [f"| {label(k, lang)} | {v} |" for k, v in f.numbers] + [""]
            if f.id in MEASURED and f.values:
                out += [f"**{UI['measured'][lang]}:** {t(MEASURED, f.id, lang, **f.values)}", ""]
            if f.id in NOTES:
                out += [NOTES[f.id][lang], ""]
            out += [f"**{UI['verdict'][lang]}:** {VERDICT[f.verdict][lang]} ({UI['rule'][lang]}: "
                    f"{RULES[f.id][lang]})", ""]
            for name in f.figures:
                if name in figures:
                    rel = figures[name].relative_to(folder).as_posix()
                    out += [f"![{FIGURES[name][lang]}]({rel})", ""]
            out += [f"**{UI['reproduce'][lang]}:** `{f.command}`", ""]
    out += [f"## {UI['provenance'][lang]}", "", t(UI, "provenance_text", lang, **provenance_values(results)), ""]
    return "\n".join(out)


__all__ = ["render_html", "render_markdown", "verdict_table_markdown"]
