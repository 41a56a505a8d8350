"""The report as short Markdown for a pull-request comment: a summary table and, per run that
did not hold, what went wrong. No links to anything outside the comment; at most
``MAX_CHARS`` characters (cut with a note)."""

from __future__ import annotations

from lkchaos.report.model import Report, Run, label

#: GitHub refuses comments over 65,536 characters; keep room for a wrapper.
MAX_CHARS = 60_000
MAX_PROBLEMS_PER_RUN = 8
_ICONS = {"held": "✅", "deviated": "⚠️", "failed": "❌", "not_recovered": "🛑",
          "interrupted": "⏹️", "refused": "🚫", "skipped": "⏭️"}  # fmt: skip


def cell(text: object, limit: int = 160) -> str:
    """``text`` safe in a Markdown table cell: one line, pipes and markup escaped, cut."""
    value = " ".join(str(text).split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    for char in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        value = value.replace(char, "\\" + char)
    return value


def verdict(value: str) -> str:
    return f"{_ICONS.get(value, '•')} {label(value)}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _run_row(run: Run) -> str:
    rto, ttd, availability = run.rto, run.ttd, run.availability
    return (f"| {cell(run.suite_name, 80)} | {verdict(run.verdict)} | {_secs(run.duration_s)} | "
            f"{_secs(rto[0] if rto else None)} | {_secs(ttd[0] if ttd else None)} | "
            f"{'—' if availability is None else f'{availability[0] * 100:.1f} %'} | "
            f"{'—' if run.score is None else f'{run.score:.1f}'} |")


def _failure(run: Run) -> list[str]:
    lines = [f"#### {verdict(run.verdict)}: {cell(run.suite_name, 120)}", ""]
    for problem in run.problems[:MAX_PROBLEMS_PER_RUN]:
        lines.append(f"- {cell(problem, 400)}")
    if len(run.problems) > MAX_PROBLEMS_PER_RUN:
        lines.append(f"- … and {len(run.problems) - MAX_PROBLEMS_PER_RUN} more")
    if not run.problems:
        lines.append("- no problem was recorded in the journal")
    return [*lines, ""]


def render(report: Report, max_chars: int = MAX_CHARS) -> str:
    """The Markdown text, at most ``max_chars`` characters."""
    head = [f"## {cell(report.title, 200)}", ""]
    day = report.gameday
    if day is not None:
        score = "—" if day.score is None else f"{day.score:.1f}"
        head += [f"**Game day {cell(day.name, 100)}**: {verdict(day.status)}, score {score} "
                 f"({len(report.entries)} entries)", ""]
        skipped = [e.info for e in report.entries if e.run is None]
        for info in skipped:
            note = f": {cell(info.note, 200)}" if info.note else ""
            head.append(f"- {verdict(info.outcome)} {cell(info.name, 100)} (repeat "
                        f"{info.repeat}){note}")
        if skipped:
            head.append("")
    counts = ", ".join(f"{n} {label(v)}" for v, n in report.counts().items())
    head += [f"{len(report.runs)} experiment run(s): {counts}.", "",
             "| Experiment | Verdict | Duration | RTO | TTD | Availability | Score |",
             "|---|---|---:|---:|---:|---:|---:|"]
    body = [_run_row(run) for run in report.runs]
    failing = [run for run in report.runs if run.verdict != "held"]
    details = ["", "### What failed", ""] if failing else []
    for run in failing:
        details += _failure(run)
    footer = ["", f"_Generated {report.generated_at}; the HTML report has the timelines, "
                  "every probe and the audio of failed voice turns._"]
    lines = head + body + details + footer
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    return _cut(lines, max_chars)


def _cut(lines: list[str], max_chars: int) -> str:
    note = "\n\n_… truncated to fit a comment: {n} more line(s); see the HTML report._"
    kept: list[str] = []
    size = len(note) + 10
    for line in lines:
        if size + len(line) + 1 > max_chars:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) + note.format(n=len(lines) - len(kept))
