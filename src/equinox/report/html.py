"""A self-contained HTML page: inline CSS, PNGs as data URIs, no scripts, fonts or external links."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from equinox.report.plots import Plot
from equinox.report.tables import Table, fmt

CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1f3a5f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 24px; }
header p { margin: 2px 0; font-size: 13px; opacity: 0.9; }
header code { background: rgba(255,255,255,0.15); padding: 1px 5px; border-radius: 3px; }
main { padding: 8px 28px 40px 28px; }
h2 { border-bottom: 2px solid #1f3a5f; padding-bottom: 4px; margin-top: 32px; font-size: 20px; }
h3 { margin: 22px 0 6px 0; font-size: 16px; }
nav ul { columns: 2; font-size: 13px; }
nav a { color: #1f3a5f; }
.problems { background: #fff4e5; border-left: 5px solid #e67e22; padding: 10px 16px; margin: 16px 0; }
.problems li { font-size: 13px; margin: 3px 0; }
.meta { font-size: 12px; color: #555; margin: 2px 0 8px 0; }
.tablewrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 12px; background: #fff; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; white-space: nowrap; }
th { background: #eef2f7; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #f7f9fb; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 8px; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #444; max-width: 1000px; margin-top: 4px; }
figcaption b { color: #222; }
ul.notes { font-size: 12px; color: #444; }
"""


@dataclass
class Section:
    """A titled block of tables and figures."""

    title: str
    anchor: str
    intro: str = ""
    meta: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(plot: Plot) -> str:
    """The plot's PNG as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(plot.path.read_bytes()).decode("ascii")


def table_html(table: Table) -> str:
    """An HTML table; numbers right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = []
        for v in row:
            is_num = v is not None and not isinstance(v, str)
            title = "" if not is_num or (isinstance(v, float) and math.isnan(v)) else f' title="{v!r}"'
            cells.append(f'<td class="num"{title}>{_e(fmt(v))}</td>' if is_num else f"<td>{_e(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _problems(items: Sequence[str], heading: str) -> str:
    if not items:
        return ""
    lis = "".join(f"<li>{_e(p)}</li>" for p in items)
    return f'<div class="problems"><b>{_e(heading)}</b><ul>{lis}</ul></div>'


def _section(sec: Section) -> str:
    parts = [f'<section id="{_e(sec.anchor)}"><h2>{_e(sec.title)}</h2>']
    if sec.meta:
        parts.append(f'<p class="meta">{_e(sec.meta)}</p>')
    if sec.intro:
        parts.append(f"<p>{_e(sec.intro)}</p>")
    parts.append(_problems(sec.problems, "Missing or unreadable in this run directory:"))
    for table in sec.tables:
        parts.append(f"<h3>{_e(table.title)}</h3>{table_html(table)}")
    if sec.plots:
        figs = "".join(
            f'<figure><img alt="{_e(p.title)}" src="{data_uri(p)}"><figcaption><b>{_e(p.title)}.</b> '
            f"{_e(p.caption)}</figcaption></figure>" for p in sec.plots)
        parts.append(f'<div class="plots">{figs}</div>')
    parts.append("</section>")
    return "".join(parts)


def render_html(title: str, subtitle: Sequence[str], sections: Sequence[Section], problems: Sequence[str],
                notes: Sequence[str]) -> str:
    """The whole page as one string."""
    nav = "".join(f'<li><a href="#{_e(s.anchor)}">{_e(s.title)}</a></li>' for s in sections)
    sub = "".join(f"<p>{line}</p>" for line in subtitle)  # subtitle lines are pre-escaped by the caller
    note_items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    body = "".join(_section(s) for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{sub}</header><main>"
        + _problems(problems, "Problems (what could not be made or read was skipped):")
        + f'<nav><h2>Contents</h2><ul>{nav}</ul></nav>{body}'
        f'<section id="definitions"><h2>Definitions</h2><ul class="notes">{note_items}</ul></section>'
        "</main></body></html>\n"
    )
