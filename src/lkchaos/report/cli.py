"""``lkchaos report``: journals (files, or run ids whose journals the history keeps; or a game
day from the history) to HTML, Markdown and JUnit;
a voice load ramp (``--load``: its JSON file or its id in the history) to HTML and Markdown.

Exit status: 0 when the files were written, 2 for bad usage or a journal that cannot be read,
1 for any other lkchaos error (a history that cannot be reached, a file that cannot be
written). The paths written are printed, one per line.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from lkchaos.cliutil import handle_errors
from lkchaos.errors import ConfigError
from lkchaos.report.load import JournalSource, load_report, read_journal
from lkchaos.report.model import GamedayInfo
from lkchaos.report.write import check_outputs, write_report_files


def _history_gameday(name_or_id: str, url: str | None) -> tuple[GamedayInfo, list[JournalSource]]:
    from lkchaos.report.fromhistory import gameday_from_history

    day, journals = gameday_from_history(name_or_id, url)
    return day, list(journals)


def _default_title(sources: list[JournalSource], gameday: GamedayInfo | None) -> str:
    if gameday is not None:
        return f"Game day {gameday.name}"
    if len(sources) == 1:
        journal = read_journal(sources[0]) if isinstance(sources[0], Path) else sources[0]
        title = (journal.get("experiment") or {}).get("title")
        if isinstance(title, str) and title.strip():
            return title
    return "lkchaos experiment report"


#: A run id as `lkchaos history` shows it (12 hex digits), or a unique prefix of 4 or more.
_RUN_ID = re.compile(r"[0-9a-f]{4,32}")


def _run_ids(journals: tuple[Path, ...]) -> list[str]:
    """The arguments that are run ids of the history rather than journal files: no such file,
    and the shape of an id."""
    return [str(j) for j in journals if not j.exists() and _RUN_ID.fullmatch(str(j))]


def _sources(journals: tuple[Path, ...], url: str | None) -> list[JournalSource]:
    """Each argument's journal: the file, or for a run id the journal the history keeps (a
    journal file is overwritten by the next `chaos run` in the same folder; the history's
    copy is the run's own)."""
    ids = set(_run_ids(journals))
    if not ids:
        return list(journals)
    from lkchaos.history import open_history
    from lkchaos.history.store import NotFound

    found: dict[str, JournalSource] = {}
    with open_history(url, existing=True) as history:
        for run_id in ids:
            try:
                found[run_id] = history.journal(run_id)
            except NotFound as exc:
                raise ConfigError(f"{exc} (`lkchaos history list` shows the run ids; a journal "
                                  "file is given by its path)") from None
    return [found[str(j)] if str(j) in found else j for j in journals]


@click.command("report")
@click.argument("journals", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML report to write.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
              help="Also write a short Markdown summary (for a pull-request comment).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Also write JUnit XML (one test suite per experiment run).")
@click.option("--title", help="The report's title (default: the experiment's, or the game "
                              "day's).")
@click.option("--gameday", "gameday_ref", metavar="NAME_OR_RUN_ID",
              help="Report on a game day from the history: a game day run id, or a game "
                   "day's name for its latest run.")
@click.option("--load", "load_ref", metavar="FILE_OR_LOAD_ID",
              help="Report on a voice load ramp: the file `lkchaos load --json` wrote, or a "
                   "load id from `lkchaos history loads`.")
@click.option("--history-url", help="The history database (default: $LKCHAOS_HISTORY_URL, "
                                    "else the state folder's SQLite file).")
@handle_errors
def report(journals: tuple[Path, ...], output: Path, markdown_path: Path | None,
           junit_path: Path | None, title: str | None, gameday_ref: str | None,
           load_ref: str | None, history_url: str | None) -> None:  # fmt: skip
    """Turn Chaos Toolkit journals into one self-contained HTML report (opens offline), and
    optionally Markdown and JUnit XML.

    \b
    lkchaos report journal.json -o report.html --markdown summary.md --junit junit.xml
    lkchaos report 3f2a9c1b7d04      # a run id of `lkchaos history list`: its own journal
    lkchaos report --gameday weekly --history-url sqlite:///history.sqlite
    lkchaos report --load ramp.json -o ramp.html
    """
    inputs = [*(j for j in journals if str(j) not in _run_ids(journals)),
              *([Path(load_ref)] if load_ref and Path(load_ref).is_file() else [])]
    check_outputs(inputs, {"--output": output, "--markdown": markdown_path,
                           "--junit": junit_path})  # fmt: skip
    if load_ref is not None:
        if journals or gameday_ref is not None or junit_path is not None:
            raise ConfigError("--load reports on one load ramp: give no journal files, "
                              "--gameday or --junit with it")  # fmt: skip
        _load_report(load_ref, history_url, output, markdown_path, title)
        return
    if gameday_ref is None and not journals:
        raise ConfigError("give one or more journal files or run ids (`lkchaos history list`), "
                          "or --gameday NAME_OR_RUN_ID")
    if gameday_ref is not None and journals:
        raise ConfigError("give journal files or --gameday, not both")
    if history_url is not None and gameday_ref is None and not _run_ids(journals):
        raise ConfigError("--history-url is only used with --gameday, --load or run ids")
    day: GamedayInfo | None = None
    if gameday_ref is not None:
        day, sources = _history_gameday(gameday_ref, history_url)
    else:
        sources = _sources(journals, history_url)
    built = load_report(sources, title=title or _default_title(sources, day), gameday=day)
    paths = {"html": output}
    if markdown_path is not None:
        paths["md"] = markdown_path
    if junit_path is not None:
        paths["junit"] = junit_path
    for path in write_report_files(built, paths).values():
        click.echo(str(path))


def _load_report(ref: str, history_url: str | None, output: Path, markdown_path: Path | None,
                 title: str | None) -> None:  # fmt: skip
    from lkchaos.errors import LkChaosError
    from lkchaos.load import ramp, record
    from lkchaos.report import loadramp

    path = Path(ref)
    if path.is_file():
        if history_url is not None:
            raise ConfigError("--history-url is for a load id; a file needs none")
        result, load_id = loadramp.read_result(path), None
    elif path.suffix == ".json" or "/" in ref:
        raise ConfigError(f"no load ramp file at {ref} (write one with `lkchaos load --json "
                          "FILE`, or give a load id from `lkchaos history loads`)")  # fmt: skip
    else:
        result, load_id = record.result(ref, history_url), ref
        if problem := loadramp.shape_problem(result):
            raise ConfigError(f"load ramp {ref} in the history cannot be shown: {problem}")
    written = [(output, loadramp.render(result, title, load_id))]
    if markdown_path is not None:
        written.append((markdown_path, ramp.table(result) + "\n"))
    for target, text in written:
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise LkChaosError(f"cannot write {target}: {exc}") from exc
        click.echo(str(target))
