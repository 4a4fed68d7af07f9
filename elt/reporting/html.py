"""One self-contained HTML page of a report: the tables, and the PNGs embedded as base64 (readable
offline, no external resources)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from elt.reporting import tables

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:4px}
.plots{display:flex;flex-wrap:wrap}.plots img{width:48%;min-width:420px;height:auto;object-fit:contain}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}code{font-size:12px}"""


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def render_html(report: dict, pngs: Sequence[Path]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>elt report: {html.escape(report['run_dir'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>elt report</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in tables.headline(report)]
    parts.append("<h2>Iterations</h2>" + _table(tables.COLUMNS, tables.summary_rows(report)))
    if pngs:
        parts.append("<h2>Plots</h2><div class='plots'>" + "".join(_img(p) for p in pngs) + "</div>")
    parts.append("<h2>Iterations in detail</h2>")
    rows = report["iterations"] + ([report["current"]] if report.get("current") else [])
    for r in rows:
        inner = "".join(f"<p>{html.escape(line)}</p>" for line in tables.detail_lines(r))
        inner += "<h4>Walkers</h4>" + _table(tables.WALKER_COLUMNS, tables.walker_rows(r))
        if r["failures"]:
            inner += "<h4>Failed labels</h4>" + _table(tables.FAILURE_COLUMNS, tables.failure_rows(r))
        if r["labeled"]:
            inner += "<h4>Labeled frames</h4>" + _table(tables.LABELED_COLUMNS, tables.labeled_rows(r))
        parts.append(f"<details><summary>iteration {r['iteration']} ({html.escape(r['status'])})</summary>{inner}</details>")
    parts.append("</body></html>")
    return "\n".join(parts)
