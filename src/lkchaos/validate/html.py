"""The run as a self-contained HTML sign-off sheet: inline CSS, no script, no request.

The summary, then every item in the document's order with its status and evidence; a manual
item has a checkbox and a blank for who confirmed it; the sign-off items have blanks for the
name and date; the document's approval block ends the sheet. It prints on A4 as it shows.
"""

from __future__ import annotations

from html import escape

from lkchaos.validate.output import headings, plain, summary
from lkchaos.validate.runner import ItemResult, Report

#: The document's closing sign-off lines.
APPROVALS = ("Deployment Approval", "Production Release Authorized By")
SIGNOFF_GROUPS = ("signoff-technical", "signoff-business")
SIGNOFF_SECTION = "Sign-off Checklist"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.6em;margin:0 0 .2em}h2{margin-top:1.6em;border-bottom:2px solid #d0d7de}
h3{margin:1.2em 0 .3em}h4{margin:.8em 0 .2em;color:#57606a}
table{border-collapse:collapse;width:100%;table-layout:fixed}
td,th{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa}
td.st{font-weight:600;text-align:center}td.id{font:12px monospace;color:#57606a;
word-break:break-all}td{overflow-wrap:anywhere}tr.child td.tx{padding-left:1.8em}
.pass{background:#dafbe1}.fail{background:#ffd8d3}.warn{background:#fff1c2}
.error{background:#f5d9ff}.manual{background:#ddf4ff}.na{background:#eaeef2;color:#57606a}
.counts span{display:inline-block;margin:0 .6em .3em 0;padding:2px 8px;border-radius:4px}
.blank{display:inline-block;min-width:12em;border-bottom:1px solid #1b1f24;height:1.1em}
.confirm{white-space:nowrap;font-size:12px;color:#57606a}
.approval p{font-size:1.05em;margin:1.2em 0}.problem{color:#b42318;font-weight:600}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}}
"""


def _cls(status: str) -> str:
    return "na" if status == "n/a" else status


def _row(result: ItemResult) -> str:
    item = result.item
    evidence = escape(result.evidence)
    if result.item.id.split(".", 1)[0] in SIGNOFF_GROUPS:
        evidence = ('<span class="confirm">Name <span class="blank"></span> Date '
                    '<span class="blank" style="min-width:7em"></span></span>')
    elif result.status == "manual":
        evidence = (f'<label class="confirm"><input type="checkbox"> confirmed by '
                    f'<span class="blank"></span></label><br>{evidence}')
    child = ' class="child"' if item.parent else ""
    return (f'<tr{child}><td class="st {_cls(result.status)}">{escape(result.status)}</td>'
            f'<td class="tx">{escape(plain(item.text))}</td><td class="id">{escape(item.id)}'
            f"</td><td>{evidence}</td></tr>")


def render(report: Report, title: str = "Deployment validation sign-off sheet") -> str:
    """The sheet as one HTML document (UTF-8, no external resource)."""
    counts = "".join(f'<span class="{_cls(s)}">{n} {escape(s)}</span>'
                     for s, n in report.counts().items())  # fmt: skip
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Target: <b>{escape(report.target or 'the configured deployment')}</b>. Run "
        f"{escape(report.started_at.isoformat(timespec='seconds'))}, "
        f"{report.duration_s:.1f} s.</p>",
        f'<p class="summary">{escape(summary(report))}</p><p class="counts">{counts}</p>',
    ]  # fmt: skip
    parts += [f'<p class="problem">error: {escape(p)}</p>' for p in report.load_errors]
    open_table, section, approved = False, "", False
    for level, heading, result in headings(report):
        if level and open_table:
            parts.append("</tbody></table>")
            open_table = False
        if level == "section":
            if section == SIGNOFF_SECTION:  # the document's approval lines end that section
                parts.append(_approvals())
                approved = True
            section = heading
        if level:
            tag = {"section": "h2", "group": "h3", "subgroup": "h4"}[level]
            parts.append(f"<{tag}>{escape(heading)}</{tag}>")
            continue
        if not open_table:
            parts.append('<table><colgroup><col style="width:5.5em"><col style="width:27%">'
                         '<col style="width:14em"><col></colgroup><thead><tr><th>Status</th>'
                         "<th>Item</th><th>Id</th><th>Evidence</th></tr></thead><tbody>")
            open_table = True
        parts.append(_row(result))
    if open_table:
        parts.append("</tbody></table>")
    if not approved:
        parts.append(_approvals())
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _approvals() -> str:
    lines = [f'<p><b>{escape(line)}</b>: <span class="blank" style="min-width:20em"></span> '
             '<b>Date</b>: <span class="blank" style="min-width:8em"></span></p>'
             for line in APPROVALS]  # fmt: skip
    return '<section class="approval">' + "".join(lines) + "</section>"
