"""``lkchaos load``: a voice load ramp of held callers against the target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from lkchaos.cliutil import handle_errors, target_option
from lkchaos.errors import ConfigError
from lkchaos.load.budget import DEFAULT_CORES_PER_CALLER

EXIT_HELP = """\b
Exit status:
  0  the ramp ran (its knee, if any, is reported) and left no participant behind
  1  the knee came at or below --require callers, or a room was left with a participant
  2  could not run (bad arguments, the target or its prober unreachable)"""


@click.command(epilog=EXIT_HELP)
@click.option("--steps", default="10,25,50,100,200", show_default=True,
              help="Concurrent callers per step, rising, comma separated.")
@click.option("--step-s", default=60.0, show_default=True, type=float,
              help="Seconds each step is measured (after its warm-up).")
@click.option("--warmup-s", default=15.0, show_default=True, type=float,
              help="Seconds each step's callers settle before turns count.")
@click.option("--p95-budget-s", default=1.2, show_default=True, type=float,
              help="A step breaks when its turn latency p95 passes this (seconds).")
@click.option("--min-answered-pct", default=99.0, show_default=True, type=float,
              help="A step breaks when fewer of its turns were answered right (%).")
@click.option("--transcribe-every", default=5, show_default=True, type=int,
              help="Transcribe every N-th reply's audio; the others are checked by the "
                   "agent's own report (0: never transcribe).")
@click.option("--judge-cpu", default=DEFAULT_CORES_PER_CALLER, show_default=True, type=float,
              metavar="CORES",
              help="Go callers: the CPU (cores per caller) transcribing those sampled replies "
                   "may take; past it a sample is checked by the agent's report, so the judge "
                   "never outgrows the calls (0: no limit). Replies the agent did not report "
                   "are always transcribed.")
@click.option("--engine", type=click.Choice(["go", "python"]), default="go",
              show_default=True,
              help="go: lean callers on LiveKit's Go SDK, in one process on this machine "
                   "(questions Opus-encoded once, replies found without decoding; Go builds "
                   "stack/tools/heldcallers once); python: callers on LiveKit's Python SDK "
                   "in the stack's prober (WebRTC's whole audio pipeline per caller, about six "
                   "times the CPU).")
@click.option("--stagger-s", default=0.5, show_default=True, type=float,
              help="Seconds between the starts of a step's callers.")
@click.option("--max-callers", default=200, show_default=True, type=int,
              help="No step may hold more callers than this.")
@click.option("--keep-going", is_flag=True, help="Run every step, past the knee.")
@click.option("--require", "required", type=int, default=None, metavar="N",
              help="Exit 1 unless every step up to N callers held its budget.")
@click.option("--json", "json_file", metavar="FILE", help="Write the ramp's figures as JSON.")
@click.option("--markdown", "markdown_file", metavar="FILE",
              help="Write the ramp's table as Markdown.")
@click.option("--history/--no-history", "use_history", default=None,
              help="Record the ramp in the run history (default: when one exists: "
                   "$LKCHAOS_HISTORY_URL, or history.sqlite in the state folder); "
                   "`lkchaos history loads` lists them.")
@target_option
@handle_errors
def load(steps: str, step_s: float, warmup_s: float, p95_budget_s: float,
         min_answered_pct: float, transcribe_every: int, judge_cpu: float, engine: str,
         stagger_s: float,
         max_callers: int,
         keep_going: bool, required: int | None, json_file: str | None,
         markdown_file: str | None, use_history: bool | None) -> None:  # fmt: skip
    """Ramp held callers through steps against the target (the reference stack by default)
    and find where it breaks: per step, callers connected, turns answered, turn latency
    p50/p95/p99, join and dispatch times, each container's CPU and memory, LiveKit's packet
    loss and jitter; the knee is the first step over budget. Every call ends after its step;
    rooms left with a participant are reported."""
    from lkchaos.history.connect import history_exists
    from lkchaos.load import ramp
    from lkchaos.settings import Settings

    plan = ramp.Plan(steps=ramp.parse_steps(steps), step_s=step_s, warmup_s=warmup_s,
                     p95_budget_s=p95_budget_s, min_answered_pct=min_answered_pct,
                     transcribe_every=transcribe_every, judge_cpu=judge_cpu,
                     stagger_s=stagger_s,
                     max_callers=max_callers, stop_at_knee=not keep_going)  # fmt: skip
    _check_required(required, plan.steps)
    _check_outputs(json_file, markdown_file)
    settings = Settings.load()
    settings.require_keys()
    click.echo(f"load ramp: steps {', '.join(map(str, plan.steps))} callers, {plan.step_s:g} s "
               f"each after {plan.warmup_s:g} s of warm-up; at most "
               f"{plan.longest_s() / 60:.0f} min", err=True)  # fmt: skip
    def say(text: str) -> None:
        click.echo(text, err=True)

    if engine == "go":
        from lkchaos.load.gocallers import GoCallers

        with GoCallers(settings, say, judge_cpu=plan.judge_cpu) as callers:
            say(f"Go callers joining {callers.url}")
            result = ramp.Ramp(settings, plan, say, callers).run()
            result["judge_budget"] = callers.budget.summary()  # over the whole ramp
    else:
        from chaoslib.exceptions import ActivityFailed

        try:
            result = ramp.Ramp(settings, plan, say).run()
        except ActivityFailed as exc:  # the prober's calls: it is not there, or refused them
            raise ConfigError(f"could not run the ramp: {exc}") from exc
    result["engine"] = engine
    if history_exists(settings.state_dir) if use_history is None else use_history:
        _record(result)  # first: a bad output path below must not lose the ramp
    table = ramp.table(result)
    click.echo(table)
    for path, text, what in ((json_file, json.dumps(result, indent=2, default=str), "JSON"),
                             (markdown_file, table + "\n", "Markdown")):  # fmt: skip
        if path:
            try:
                Path(path).write_text(text)
            except OSError as exc:
                raise ConfigError(f"cannot write the {what} to {path}: {exc}") from exc
    left = result["leftover"]
    if left:
        click.echo(f"left behind: {left}", err=True)
        raise SystemExit(1)
    knee = result["knee"]
    if required is not None and knee is not None and knee <= required:
        click.echo(f"the knee ({knee} callers) is at or below the required {required}", err=True)
        raise SystemExit(1)


def _check_required(required: int | None, steps: tuple[int, ...]) -> None:
    """``--require N`` must be a step the ramp reaches: a gate on more callers than the top
    step would pass without ever holding them."""
    if required is None:
        return
    if required < 1:
        raise ConfigError(f"--require takes a number of callers >= 1, not {required}")
    if required > max(steps):
        raise ConfigError(f"--require {required}: the ramp's top step is {max(steps)} callers, "
                          f"so it could never show {required} held; add a step of at least "
                          f"{required} to --steps")  # fmt: skip


def _check_outputs(*paths: str | None) -> None:
    """Refuse, before the ramp, an output file that could not be written after it; make its
    missing folders, as every command's output options do."""
    for path in filter(None, paths):
        target = Path(path).expanduser()
        if target.is_dir():
            raise ConfigError(f"{path} is a folder: give a file name for the output")
        folder = target.absolute().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: its folder {folder} cannot be made "
                              f"({exc.strerror or exc})") from exc  # fmt: skip
        if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise ConfigError(f"cannot write {path}: permission denied")


def _record(result: dict[str, object]) -> None:
    from lkchaos.errors import LkChaosError
    from lkchaos.load import record
    from lkchaos.settings import selected_target

    selection = selected_target()
    target = selection.describe() if selection is not None else "the reference stack"
    try:
        load_id = record.record(result, target)
    except LkChaosError as exc:  # the ramp is done; not recording it is said, not fatal
        click.secho(f"warning: not recorded in the run history: {exc}", fg="yellow", err=True)
        return
    click.echo(f"recorded in the run history as load ramp {load_id[:12]}", err=True)
