"""``lkchaos gameday check|run|schedule``.

Exit codes of ``run`` (and ``check``): 0 every entry held (the file is valid); 1 an entry
deviated or failed; 2 invalid input (a bad game day file, an unknown option); 3 not recovered;
4 another game day is running; 130 interrupted. See docs/gamedays.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from lkchaos.cliutil import target_option
from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.gameday.runner import EXIT

FILE = click.Path(dir_okay=False, path_type=Path)


def _fail(message: str, code: int) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@click.group()
def gameday() -> None:
    """Run suites of experiments unattended: check, run, schedule."""


@gameday.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
@click.option("--no-experiments", is_flag=True,
              help="Check the game day file alone, not the experiments it names.")
@target_option
def check(files: tuple[Path, ...], no_experiments: bool) -> None:
    """Check game day files without running anything.

    The schema (unknown keys, types, ranges), the cron schedule, unique entry names, and
    every experiment (exists, JSON, `lkchaos check --offline`, Chaos Toolkit's validation).
    Prints FILE:LINE: problem; fix for each problem; exits 2 when there is one.
    """
    from lkchaos.gameday.check import check_gameday
    from lkchaos.gameday.child import fault_env

    try:
        fault_env(os.environ)
    except ConfigError as exc:
        _fail(f"{exc}; nothing was checked", EXIT["invalid"])
    failed = 0
    for path in files:
        _, problems = check_gameday(path, experiments=not no_experiments)
        if problems:
            failed += 1
            for problem in problems:
                click.echo(str(problem), err=True)
        else:
            click.secho(f"{path}: ok", fg="green")
    if failed:
        _fail(f"{failed} of {len(files)} game day file(s) have problems; nothing was run",
              EXIT["invalid"])  # fmt: skip


@gameday.command()
@click.argument("file", type=FILE)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for journals and reports [default: <state>/gamedays/<name>-<UTC "
                   "time>/, with --ci lkchaos-artifacts/].")
@click.option("--ci", is_flag=True, help="CI mode: short fault windows ($LKCHAOS_FAULT_S or "
              "8 s unless an entry says less), plain lines, JUnit + HTML + Markdown in --out.")
@click.option("--plain", is_flag=True, help="One line per event, even on a terminal.")
@click.option("--junit", type=FILE, help="Also write the JUnit XML to this file.")
@click.option("--settings", "settings_file", type=FILE,
              help="Chaos Toolkit settings to merge [default: ~/.chaostoolkit/settings.yaml].")
@click.option("--scheduled", is_flag=True, hidden=True, help="Started by `gameday schedule`.")
@target_option
def run(file: Path, out_dir: Path | None, ci: bool, plain: bool, junit: Path | None,
        settings_file: Path | None, scheduled: bool) -> None:  # fmt: skip
    """Run a game day: its entries in order with a baseline check before each one.

    Ctrl-C (or SIGTERM) interrupts the running experiment, which plays its rollbacks, then
    lkchaos's recovery runs and the reports are written (exit 130).
    """
    from lkchaos.gameday.check import GamedayInvalid
    from lkchaos.gameday.lock import GamedayRunning
    from lkchaos.gameday.progress import make_display
    from lkchaos.gameday.runner import RunOptions, run_gameday

    if ci and out_dir is None:
        out_dir = Path("lkchaos-artifacts")
    options = RunOptions(out_dir=out_dir.resolve() if out_dir else None, ci=ci,
                         scheduled=scheduled, junit=junit, settings_file=settings_file)
    display = make_display(plain or ci, sys.stderr)
    try:
        code = run_gameday(file, options, display)
    except GamedayInvalid as exc:
        display.close()
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        _fail(f"{file} has {len(exc.problems)} problem(s); nothing was run", EXIT["invalid"])
    except GamedayRunning as exc:
        display.close()
        _fail(str(exc), EXIT["running"])
    except ConfigError as exc:
        display.close()
        _fail(str(exc), EXIT["invalid"])
    except LkChaosError as exc:
        display.close()
        _fail(str(exc), EXIT["deviated"])
    display.close()
    sys.exit(code)


@gameday.command()
@click.argument("files", nargs=-1, required=True, type=FILE)
@click.option("--for", "duration", metavar="DURATION",
              help="Stop after this long (30s, 10m, 2h, 7d); default: until SIGTERM.")
@click.option("--max-runs", type=click.IntRange(min=1), help="Stop after this many game days.")
@click.option("--ci", is_flag=True, help="Run each game day with --ci.")
@target_option
def schedule(files: tuple[Path, ...], duration: str | None, max_runs: int | None,
             ci: bool) -> None:  # fmt: skip
    """Keep scheduled game days running, each at its `schedule:` (cron).

    Each due game day runs in a child process (`lkchaos gameday run --scheduled`), never two
    at once: a fire while another game day runs is recorded as skipped, a fire missed while
    the machine was busy or asleep as missed. SIGTERM (or Ctrl-C) stops the scheduler after
    the running game day has finished its rollback.
    """
    from lkchaos.gameday.schedule import parse_duration, run_schedules

    try:
        seconds = parse_duration(duration) if duration else None
        code = run_schedules(list(files), for_s=seconds, max_runs=max_runs, ci=ci,
                             say=lambda text: click.echo(text, err=True))  # fmt: skip
    except ConfigError as exc:
        _fail(str(exc), EXIT["invalid"])
    sys.exit(code)
