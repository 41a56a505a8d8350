"""``lkchaos validate``: the deployment validation checklist, item by item, with evidence."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import click

from lkchaos.cliutil import handle_errors
from lkchaos.errors import ConfigError, LkChaosError

EXIT_HELP = """\b
Exit status:
  0  every automated item passed, warned or does not apply (manual items do not count)
  1  some item failed, or its check could not give an answer (error): an item not shown
     to hold must stop a deployment gate as a failure does
  2  could not run: bad arguments or an unknown section or id (nothing is run), no
     LiveKit node of the target answering (down or hung: nothing is run), a check module
     that does not load, or every automated item in error"""


#: How long each LiveKit node has to give any HTTP answer before a run: when none does, the
#: deployment is down or hung, and the checklist is not run (exit 2).
DOWN_HTTP_TIMEOUT_S = 3.0


def _paths(value: str | None) -> Path | None:
    return Path(value) if value else None


def _write(path: Path | None, text: str, what: str) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} to {path}: {exc}") from exc
    click.echo(f"{what} written to {path}", err=True)


@click.command(epilog=EXIT_HELP)
@click.option("--section", multiple=True, metavar="NAME",
              help="A section title, a group title or a group id (tls, redis); repeatable or "
                   "comma separated.")
@click.option("--only", multiple=True, metavar="ID",
              help="Only these item ids or prefixes (tls, infra.firewall-rules-configured).")
@click.option("--skip", multiple=True, metavar="ID", help="Leave out these item ids or prefixes.")
@click.option("--list", "list_items", is_flag=True,
              help="Print the selected items' ids and texts; run nothing.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(1, 600),
              help="Seconds each check may take (a check still running 5 s later is an error).")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Checks run at the same time.")
@click.option("--markdown", "markdown_file", metavar="FILE",
              help="Write the checklist as Markdown.")
@click.option("--html", "html_file", metavar="FILE",
              help="Write a self-contained HTML sign-off sheet (opens offline).")
@click.option("--junit", "junit_file", metavar="FILE", help="Write JUnit XML (one case per item).")
@click.option("--json", "json_file", metavar="FILE", help="Write the results as JSON.")
@click.option("--watch", "watch_for", metavar="DURATION",
              help="Repeat the automated items for this long (30m, 24h, 7d) and report "
                   "stability; Ctrl-C ends it early with the report so far.")
@click.option("--every", default=None, metavar="INTERVAL",
              help="With --watch: time between rounds.  [default: 15m]")
@click.option("--history/--no-history", "use_history", default=None,
              help="Record the run in the run history (default: when one exists: "
                   "$LKCHAOS_HISTORY_URL, or history.sqlite in the state folder).")
@click.option("--target", "target_file", type=click.Path(dir_okay=False), default=None,
              help="The target file (else $LKCHAOS_TARGET, else the reference stack's).")
@handle_errors
def validate(section: tuple[str, ...], only: tuple[str, ...], skip: tuple[str, ...],
             list_items: bool, timeout: float, workers: int, markdown_file: str | None,
             html_file: str | None, junit_file: str | None, json_file: str | None,
             watch_for: str | None, every: str | None, use_history: bool | None,
             target_file: str | None) -> None:  # fmt: skip
    """Run the deployment validation checklist against the target, item by item.

    Every item of the document is printed in its order and words: pass, fail, warn, error,
    n/a (with why) and the evidence, or manual with what a person must confirm. Items are
    selected with --section, --only and --skip (`--list` prints their ids).
    """
    from lkchaos.target.select import target_for_process
    from lkchaos.validate.selection import select

    if every is not None and watch_for is None:
        raise ConfigError(f"--every {every} repeats nothing without --watch DURATION: add "
                          "--watch (e.g. --watch 24h --every 15m) or leave --every out")
    every = every or "15m"
    chosen = select(section, only, skip)  # unknown names: ConfigError, exit 2, nothing run
    if list_items:
        for item in chosen:
            click.echo(f"{item.id:<52} {item.text}")
        return
    outputs = {"markdown": _paths(markdown_file), "html": _paths(html_file),
               "junit": _paths(junit_file), "json": _paths(json_file)}  # fmt: skip
    args = {"section": list(section), "only": list(only), "skip": list(skip)}
    with target_for_process(target_file):
        from lkchaos.cli import _check_target
        from lkchaos.settings import Settings, selected_target

        _check_target()
        selection = selected_target()
        target = selection.describe() if selection is not None else "the reference stack"
        settings = Settings.load()
        record = _recorder(use_history, settings.state_dir, args)
        if watch_for is not None:
            code = _watch(chosen, settings, watch_for, every, timeout, target, outputs, record)
        else:
            code = _once(chosen, settings, timeout, workers, target, outputs, record)
    sys.exit(code)


def _recorder(use_history: bool | None, state_dir: str, args: dict[str, Any]) -> Any:
    from lkchaos.history.connect import history_exists
    from lkchaos.validate import record

    wanted = history_exists(state_dir) if use_history is None else use_history
    if not wanted:
        return None

    def write(report: Any, watch_id: str | None = None) -> None:
        try:
            validation_id = record.record(report, args, watch_id=watch_id)
        except LkChaosError as exc:  # the run is done; not recording it is said, not fatal
            click.secho(f"warning: not recorded in the run history: {exc}", fg="yellow",
                        err=True)  # fmt: skip
            return
        click.echo(f"recorded in the run history as validation {validation_id}", err=True)

    return write


def _once(chosen: list[Any], settings: Any, timeout: float, workers: int, target: str,
          outputs: dict[str, Path | None], record: Any) -> int:  # fmt: skip
    from lkchaos.target.down import why_down
    from lkchaos.validate import html, junit, output, runner

    down = why_down(settings, http_timeout=DOWN_HTTP_TIMEOUT_S)
    if down is not None:  # every item would wait out its own timeouts, then be in error
        click.secho(f"error: {down}; nothing was checked", fg="red", err=True)
        return 2
    try:
        report = runner.run(chosen, settings, timeout_s=timeout, workers=workers, target=target)
    except LkChaosError:
        raise
    except Exception as exc:  # the runner itself broke: say so, exit 2
        click.secho(f"error: the checklist could not run ({type(exc).__name__}: {exc})",
                    fg="red", err=True)  # fmt: skip
        return 2
    output.print_report(report)
    _write(outputs["markdown"], output.markdown(report), "Markdown")
    _write(outputs["html"], html.render(report), "HTML sign-off sheet")
    _write(outputs["junit"], junit.render(report), "JUnit XML")
    _write(outputs["json"], output.as_json(report), "JSON")
    if record is not None:
        record(report)
    return report.exit_code()


def _watch(chosen: list[Any], settings: Any, watch_for: str, every: str, timeout: float,
           target: str, outputs: dict[str, Path | None], record: Any) -> int:  # fmt: skip
    import json

    from lkchaos.gameday.schedule import parse_duration
    from lkchaos.validate import html, junit, output, watch

    duration_s, every_s = parse_duration(watch_for), parse_duration(every)
    if every_s > duration_s:
        raise ConfigError(f"--every {every} is longer than --watch {watch_for}: nothing would "
                          "repeat")  # fmt: skip
    watch_id = uuid.uuid4().hex
    click.echo(f"watching for {watch_for}, a round every {every} (Ctrl-C ends it with the "
               "report so far)")  # fmt: skip

    def on_round(index: int, report: Any, changed: list[Any]) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
        click.echo(f"[{stamp}] round {index + 1}: {counts}")
        for change in changed if index else [c for c in changed if c.after in watch.BAD]:
            colour = "red" if change.after in watch.BAD else "green"
            click.secho(f"  {change}", fg=colour)
        if record is not None:
            record(report, watch_id)

    rounds, interrupted = watch.watch(chosen, settings, duration_s, every_s, timeout_s=timeout,
                                      on_round=on_round, target=target)  # fmt: skip
    items = watch.stability(rounds)
    click.echo("")
    for line in watch.stability_lines(items, rounds, interrupted):
        click.echo(line)
    if not rounds:
        return 2
    last = rounds[-1]
    _write(outputs["markdown"], output.markdown(last), "Markdown (last round)")
    _write(outputs["html"], html.render(last), "HTML sign-off sheet (last round)")
    _write(outputs["junit"], junit.render(last), "JUnit XML (last round)")
    _write(outputs["json"], json.dumps({"watch_id": watch_id, "interrupted": interrupted,
                                        "stability": [s.as_dict() for s in items],
                                        "rounds": [r.as_dict() for r in rounds]},
                                       indent=2, default=str) + "\n", "JSON")  # fmt: skip
    if any(r.exit_code() == 2 for r in rounds) and all(r.exit_code() == 2 for r in rounds):
        return 2
    return 1 if any(s.bad_rounds for s in items) else 0
