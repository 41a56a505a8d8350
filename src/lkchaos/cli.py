"""The ``lkchaos`` command: run and inspect the reference stack.

``lkchaos stack build|up|down|status|logs``, ``check``, ``recover``, ``audit``, ``history``,
``report``, ``gameday``, ``target``, ``validate`` and ``load``. Errors print one clear
message (with the failing service's last log lines where there is one) and exit non-zero: 1
for a stack or command failure, 2 for bad usage or configuration.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from lkchaos import __version__
from lkchaos.cliutil import handle_errors
from lkchaos.errors import ConfigError
from lkchaos.stack.layout import StackPaths


def say(message: str) -> None:
    click.echo(message, err=True)


_target_option = click.option(
    "--target", "target_file", type=click.Path(dir_okay=False), default=None,
    help="The target file (else $LKCHAOS_TARGET, else, for an experiment, its "
         "lkchaos_target, else the reference stack's); see docs/targets.md.",
)  # fmt: skip


def _check_target() -> None:
    """Refuse (ConfigError: exit 2) a selected target that is missing or invalid, before
    anything is done; no target at all is fine (the built-in defaults apply)."""
    from lkchaos.settings import selected_target

    selection = selected_target()
    if selection is not None:
        from lkchaos.target.layer import load_cached

        load_cached(selection)
    # Said on stderr, so that what is printed on stdout stays the command's own.
    shown = (selection.describe() if selection is not None
             else "none: the built-in defaults (the reference stack)")  # fmt: skip
    click.echo(f"target: {shown}", err=True)


@click.group()
@click.version_option(__version__, prog_name="lkchaos")
def main() -> None:
    """Chaos engineering for self-hosted LiveKit voice-agent deployments."""
    # A crash in native code (WebRTC, media codecs) would end the command with no word; this
    # prints where every thread was instead, on the process's own stderr (descriptor 2).
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no stderr to write to
        faulthandler.enable(file=2)


@main.command()
@click.option("--force", is_flag=True,
              help="Recover even while another process runs an experiment against the stack.")
@_target_option
@handle_errors
def recover(force: bool, target_file: str | None) -> None:
    """Undo every fault lkchaos can leave behind, even after its runner was killed.

    Undoes the fault ledger, removes lkchaos's toxics, re-enables the target's Toxiproxy
    links, unpauses and starts the containers that play a role on the target, clears
    lkchaos's network rules in them, closes lkchaos's own rooms left in Redis by a LiveKit
    node that died or by a Redis failover that lost their close (no node runs them), and
    releases a stale run lock; lists what it did, then
    checks the baseline. Exits 1 if the stack is still not back, and refuses (exit
    1, naming the run and its pid) while another process runs an experiment, whose faults it
    would undo mid-run, unless --force. The target is the one `lkchaos target check` shows
    (--target, else $LKCHAOS_TARGET, else the reference stack's).
    """
    from lkchaos.target.select import target_for_process

    with target_for_process(target_file):
        _check_target()
        _recover(force)


def _recover(force: bool) -> None:
    from chaoslib.exceptions import ActivityFailed

    from lkchaos.safety.probes import baseline
    from lkchaos.safety.recovery import recover as do_recover
    from lkchaos.settings import Settings

    start = time.monotonic()
    report = do_recover(Settings.load(), force=force)
    for item in report:
        outcome = str(item["outcome"])
        head, sep, why = outcome.partition(": ")
        if sep and head in ("error", "left alone", "undo failed"):  # what, then why
            click.echo(f"{head:<12} {item['fault']}: {why}")
        else:
            click.echo(f"{outcome:<12} {item['fault']}")
    if not report:
        click.echo("nothing to recover")

    def look() -> dict[str, Any]:
        try:
            return baseline()
        except ActivityFailed as exc:  # the deployment cannot even be looked at
            return {"ok": False, "cannot_check": str(exc)}

    state = look()
    ok = state["ok"]
    if not ok:
        from lkchaos.target.down import none_running, why_down

        settings = Settings.load()
        if none := none_running(settings):  # nothing is starting: nothing to wait for
            down = why_down(settings) or "the deployment is down"
            click.secho(f"cannot check that the deployment is back: {none}; {down}",
                        fg="red", err=True)  # fmt: skip
            sys.exit(1)
    if not ok and "cannot_check" not in state:
        # Services just started may still be warming up: give them a bounded while.
        deadline = time.monotonic() + 60
        while not ok and time.monotonic() < deadline:
            time.sleep(1)
            state = look()
            ok = state["ok"]
    took = time.monotonic() - start
    if ok:
        click.secho(f"baseline restored ({took:.1f} s)", fg="green")
        return
    if "cannot_check" in state:
        click.secho(f"cannot check that the deployment is back: {state['cannot_check']}",
                    fg="red", err=True)  # fmt: skip
        sys.exit(1)
    click.secho("the deployment is not back to baseline: " + "; ".join(_not_back(state)),
                fg="red", err=True)  # fmt: skip
    sys.exit(1)


def _not_back(state: dict[str, Any]) -> list[str]:
    """What keeps ``lkchaos.safety.probes.baseline``'s ``state`` from holding, in words."""
    said = {"unhealthy_services": "unhealthy services", "toxics": "toxics left",
            "disabled_proxies": "disabled Toxiproxy links", "pending_faults": "faults pending"}
    found = [f"{label}: {json.dumps(state[key])}" for key, label in said.items() if state.get(key)]
    ready, nodes = state.get("nodes_ready", 0), state.get("nodes", 0)
    if not nodes or ready < nodes:
        found.append(f"LiveKit nodes ready: {ready} of {nodes} (`lkchaos target check` says "
                     "which answer; on the reference stack, `lkchaos stack status`)")
    return found or ["see `lkchaos stack status` / `lkchaos target check`"]


@main.command()
@click.option("--run", "run_id", metavar="ID", help="Only this run (a prefix of its id is enough).")
@click.option("--since", metavar="WHEN",
              help="Only entries since then: a duration (30m, 2h, 7d) or an ISO date or time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines as they are stored.")
@handle_errors
def audit(run_id: str | None, since: str | None, as_json: bool) -> None:
    """Every fault injected and undone: when, which run and experiment, what, who.

    Reads the append-only audit log in the stack's state folder (`audit.jsonl`); arguments
    that name secret material are masked there.
    """
    from lkchaos.safety import audit as log
    from lkchaos.settings import Settings

    state_dir = Settings.load().state_dir
    after = log.parse_since(since) if since is not None else None  # "" is refused
    entries = log.read(state_dir, run=run_id, since=after)
    for item in entries:
        click.echo(json.dumps(item) if as_json else log.format_line(item))
    if not entries and not as_json:
        say(f"no audit entries in {log.audit_path(state_dir)}"
            + (" for this selection" if run_id or since else ""))
    bad = log.unreadable(state_dir)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10
                                                 else "")  # fmt: skip
        click.secho(f"warning: {log.audit_path(state_dir)}: line(s) {shown} are not audit "
                    f"entries and were skipped (edited, cut short, or written by something "
                    f"else): the log is append-only, so look at what changed it", fg="yellow",
                    err=True)  # fmt: skip


@main.command()
@click.argument("experiments", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True,
              help="Check the arguments only; do not read the deployment.")
@_target_option
@handle_errors
def check(experiments: tuple[str, ...], offline: bool, target_file: str | None) -> None:
    """Check experiments without running anything or changing the deployment.

    The experiment's shape and where its secrets are given; every lkchaos activity's
    arguments (types, ranges, units, injection, the harness) and, unless --offline, that the
    services, proxies and names they target exist and that what its activities use answers
    (the target's nodes, Redis, API key pair...: as `lkchaos target check` reaches them; read
    only). Secret values never appear in what it prints. Exits 0 when every experiment is
    clean (warnings are printed), 2 with every problem listed otherwise, or when the
    selected target is missing or invalid (as `lkchaos target check` selects it: --target,
    else $LKCHAOS_TARGET, else the experiment's lkchaos_target, else the reference
    stack's).
    """
    from lkchaos.target.select import target_for_process

    with target_for_process(target_file):
        _check_target()
        _check(experiments, offline)


def _check(experiments: tuple[str, ...], offline: bool) -> None:
    from lkchaos.preflight import ExperimentFileError, check_file, errors

    unreached, down = ({}, []) if offline else _unreachable(experiments)
    failed = 0
    for path in experiments:
        try:
            problems = check_file(path, offline=offline)
        except ExperimentFileError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            failed += 1
            continue
        except Exception as exc:  # a check must report, never end in a traceback
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            click.secho(f"error: {path}: could not be checked ({why})", fg="red", err=True)
            failed += 1
            continue
        wrong = errors(problems)
        failing = [*map(str, wrong), *unreached.get(path, [])]
        if not failing:
            click.secho(f"{path}: ok" + (f", {len(problems)} warning(s)" if problems else ""),
                        fg="green")  # fmt: skip
        else:
            failed += 1
            click.secho(f"{path}: {len(failing)} problem(s)", fg="red", err=True)
        for problem in failing + [str(p) for p in problems if p not in wrong]:
            click.echo(f"  - {problem}", err=True)
    if any(unreached.values()):
        click.echo("what did not answer (`lkchaos target check` shows all):", err=True)
        for found in down:
            click.echo(f"  {found}", err=True)
    if failed:
        say(f"{failed} of {len(experiments)} experiment(s) would not run; nothing was changed")
        sys.exit(2)


def _unreachable(experiments: tuple[str, ...]) -> tuple[dict[str, list[str]], list[Any]]:
    """Reach what the selected target names (as `lkchaos target check` does): per
    experiment, the activities that use a component that did not answer (a node's URL, a
    Sentinel, the API key pair...), with which: a run would fail at its steady state, or
    sample nothing but failures. The containers are the preflight's, not repeated here."""
    from lkchaos.settings import selected_target
    from lkchaos.target import applies, reach
    from lkchaos.target.load import load_target

    selection = selected_target()
    if selection is None:
        return {}, []
    loaded = load_target(selection.path)
    down = [found for found in reach.reach(loaded) if not found.ok and found.component != "docker"]
    if not down:
        return {}, []
    verdicts = applies.check_files([Path(p) for p in experiments], loaded,
                                   frozenset(found.component for found in down))  # fmt: skip
    unreached = {given: [line.replace("(see above)", "(below)")
                         for line in verdicts.get(Path(given), []) if "failed a check" in line]
                 for given in experiments}  # fmt: skip
    return unreached, down


@main.group()
def stack() -> None:
    """Build, start, inspect and remove the reference stack (docker-compose.chaos.yml)."""


@stack.command()
@click.option("--force", is_flag=True, help="Rebuild every image, not only missing ones.")
@handle_errors
def build(force: bool) -> None:
    """Build the stack's images offline (base image, pinned Go servers, Python wheels).

    Renders the stack's state first (configs, certificates, and the API key pair the first
    time), as `stack up` does: the compose file names the keys, so Compose cannot read it
    without them."""
    from lkchaos.stack import build as builder
    from lkchaos.stack.render import StackConfig, write_state

    paths = StackPaths.discover()
    start = time.monotonic()
    write_state(paths.state_dir, StackConfig.from_env())
    builder.build(paths, say, force=force)
    say(f"build done in {time.monotonic() - start:.1f} s")


@stack.command()
@click.option("--build/--no-build", "do_build", default=True, show_default=True,
              help="Build missing images first.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for every service to be healthy.")
@click.option("--warm-up/--no-warm-up", "warm_up", default=True, show_default=True,
              help="Make one call through the whole stack before returning.")
@click.option("--take-over", is_flag=True,
              help="Replace the stack even when another checkout of lkchaos started it.")
@handle_errors
def up(do_build: bool, timeout: float, warm_up: bool, take_over: bool) -> None:
    """Start the stack and wait until every service is healthy. Refused (exit 1) when
    another checkout of lkchaos started the running stack, unless --take-over."""
    from lkchaos.stack import build as builder
    from lkchaos.stack.compose import Compose, docker_client
    from lkchaos.stack.health import wait_healthy
    from lkchaos.stack.render import StackConfig, services_reading, write_state

    paths = StackPaths.discover()
    start = time.monotonic()
    client = docker_client()
    if not take_over:
        Compose(paths).refuse_other_checkout(client, "up")
    changed: list[str] = []
    write_state(paths.state_dir, StackConfig.from_env(), changed)
    if do_build:
        builder.build(paths, say)
    compose = Compose(paths)
    stale = compose.stale_services(client)
    if stale:
        say(f"replacing containers on rebuilt images: {', '.join(stale)}")
        compose.run("rm", "--stop", "--force", *stale, timeout=120)
    running = set(compose.containers(client))
    reread = [s for s in services_reading(changed) if s in running and s not in stale]
    if reread:
        say(f"restarting {', '.join(reread)}: their configs changed ({', '.join(changed)})")
        compose.run("restart", *reread, timeout=120)
    say("starting services")
    with compose.popen("up", "-d", "--no-build", "--remove-orphans") as starter:
        try:
            wait_healthy(compose, client, timeout, say, starter)
        finally:
            if starter.poll() is None:
                starter.terminate()
    _put_links_back(paths)
    if warm_up:
        _warm_up(compose, client, timeout)
    say(f"stack healthy in {time.monotonic() - start:.1f} s")


def _put_links_back(paths: StackPaths) -> None:
    """Toxiproxy's links as configured (:mod:`lkchaos.stack.links`), holding the run lock
    while it does, so an experiment started meanwhile is refused rather than having its
    links changed under it; while an experiment holds the lock, only said."""
    from lkchaos.safety import runlock
    from lkchaos.stack import layout, links
    from lkchaos.toxiproxy.client import ToxiproxyClient

    wanted = links.rendered(paths.config_dir)
    with ToxiproxyClient(f"http://127.0.0.1:{layout.host_port('toxiproxy_api')}") as toxi:
        found = links.drift(wanted, toxi.proxies())
        if not found:
            return
        # Not while an experiment runs (in this process, or one holding the lock).
        taken = not runlock.held_here(paths.state_dir)
        if taken:
            try:
                runlock.acquire(paths.state_dir,
                                "lkchaos stack up (putting the Toxiproxy links back)")
            except runlock.LockHeld:
                taken = False
        if not taken:
            holder = runlock.holder(paths.state_dir)
            title = holder.title if holder is not None else "another experiment"
            say(f"Toxiproxy's links differ from their configuration ({'; '.join(found)}): "
                f"left as they are while {title!r} runs; run `lkchaos stack up` again "
                "after it")  # fmt: skip
            return
        try:
            links.restore(toxi, wanted)
        finally:
            runlock.release(paths.state_dir)
        say(f"Toxiproxy's links put back as configured ({'; '.join(found)})")


def _warm_up(compose: Any, client: Any, timeout: float) -> None:
    """One call through the whole stack: the agent's health endpoint answers before the worker
    has registered with LiveKit, so "healthy" alone does not mean callers are answered."""
    import httpx

    from lkchaos.errors import ServiceUnhealthy
    from lkchaos.settings import Settings
    from lkchaos.stack import layout
    from lkchaos.voice.credential import authorization

    url = f"http://127.0.0.1:{layout.host_port('prober')}/round-trip"
    _, secret = Settings.load().require_keys()
    headers = {"Authorization": authorization(secret)}
    deadline = time.monotonic() + min(timeout, 120.0)
    result: dict[str, Any] = {}
    say("warm-up call through the stack")
    while time.monotonic() < deadline:
        try:
            result = httpx.post(url, json={"timeouts": {"total": 30}}, timeout=45,
                                headers=headers).json()
        except (httpx.HTTPError, ValueError) as exc:
            result = {"stage": "prober", "reason": str(exc)}
        if result.get("ok"):
            say(f"a caller was answered ({result.get('latency_s')} s)")
            return
        time.sleep(2)
    raise ServiceUnhealthy(
        "agent", f"not answering callers (last call: {result.get('stage')}: "
        f"{result.get('reason')})", compose.logs(client, "agent"),
        "see `lkchaos stack logs agent whisper mcp`",
    )


@stack.command()
@click.option("--keep-volumes", is_flag=True, help="Keep Redis and Sentinel data volumes.")
@click.option("--take-over", is_flag=True,
              help="Remove the stack even when another checkout of lkchaos started it.")
@handle_errors
def down(keep_volumes: bool, take_over: bool) -> None:
    """Stop and remove every container, network and volume of the stack. Refused (exit 1)
    when another checkout of lkchaos started it, unless --take-over."""
    from lkchaos.stack.compose import Compose, docker_client

    compose = Compose(StackPaths.discover())
    if not take_over:
        client = docker_client()
        try:
            compose.refuse_other_checkout(client, "down")
        finally:
            client.close()
    args = ["down", "--remove-orphans", "--timeout", "5"]
    if not keep_volumes:
        args.append("--volumes")
    compose.run(*args, timeout=180)
    say("stack removed")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def status(as_json: bool) -> None:
    """Each service's state and health, and cross-checks inside the stack.

    Exits 1 when a service is not healthy or a cross-check fails.
    """
    from lkchaos.settings import Settings
    from lkchaos.stack.compose import Compose, docker_client
    from lkchaos.stack.health import cross_checks, service_statuses

    compose = Compose(StackPaths.discover())
    client = docker_client()
    try:
        statuses = service_statuses(compose, client)
    finally:
        client.close()
    running = any(st.state == "running" for st in statuses)
    checks = cross_checks(Settings.load()) if running else []
    healthy = all(st.ok for st in statuses) and all(c.ok for c in checks)
    if as_json:
        click.echo(json.dumps({
            "healthy": healthy,
            "services": [vars(st) for st in statuses],
            "checks": [vars(c) for c in checks],
        }, indent=2))
    else:
        click.echo(f"{'SERVICE':<15} {'STATE':<10} HEALTH")
        for st in statuses:
            colour = "green" if st.ok else "red"
            click.echo(f"{st.service:<15} " + click.style(f"{st.state:<10} {st.health}", fg=colour))
        if checks:
            click.echo(f"\n{'CHECK':<15} {'OK':<10} DETAIL")
            for c in checks:
                mark = click.style(f"{'yes' if c.ok else 'NO':<10}", fg="green" if c.ok else "red")
                click.echo(f"{c.name:<15} {mark} {c.detail}")
        elif not running:
            click.echo("\nthe stack is not running: `lkchaos stack up` starts it")
    sys.exit(0 if healthy else 1)


@stack.command()
@click.argument("services", nargs=-1)
@click.option("--tail", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("-f", "--follow", is_flag=True, help="Follow the logs (Ctrl-C to stop).")
@handle_errors
def logs(services: tuple[str, ...], tail: int, follow: bool) -> None:
    """Show the logs of some services (all of them by default)."""
    from lkchaos.stack import layout
    from lkchaos.stack.compose import Compose

    unknown = sorted(set(services) - set(layout.SERVICES))
    if unknown:
        raise ConfigError(
            f"unknown service(s): {', '.join(unknown)}; services are {', '.join(layout.SERVICES)}"
        )
    args = ["logs", "--tail", str(tail), *(["--follow"] if follow else []), *services]
    Compose(StackPaths.discover()).run(*args, timeout=86400 if follow else 60, capture=False)


def _register() -> None:
    # Each of these modules loads its heavy imports (SQLAlchemy, matplotlib) only when run.
    from lkchaos.gameday.cli import gameday
    from lkchaos.history.cli import history
    from lkchaos.load.cli import load
    from lkchaos.report.cli import report
    from lkchaos.target.cli import target
    from lkchaos.validate.cli import validate

    main.add_command(gameday)
    main.add_command(history)
    main.add_command(load)
    main.add_command(report)
    main.add_command(target)
    main.add_command(validate)


_register()

if __name__ == "__main__":
    main()
