"""``lkchaos target show`` and ``lkchaos target check``.

``check`` prints which activities of the catalogue can run on the target and which
experiments apply to it (the files given, else the checkout's ``experiments/*.json``), each
with exactly what is missing. It exits 0 when the file is valid and everything it names is
reachable (or with ``--offline``, when the file is valid), 1 when something named is
unreachable, 2 when the file is invalid or no target can be selected. An experiment that does
not apply is not an error: the target simply lacks what it tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from lkchaos.checkout import find_root
from lkchaos.errors import ConfigError
from lkchaos.target import applies, needs, reach, secrets
from lkchaos.target.convert import settings_values
from lkchaos.target.load import LoadedTarget, check_target
from lkchaos.target.model import Target
from lkchaos.target.select import Selection, select_target

_SECRET_SETTINGS = ("livekit_api_key", "livekit_api_secret")

_target_option = click.option(
    "--target", "target_file", type=click.Path(dir_okay=False), default=None,
    help="The target file (else $LKCHAOS_TARGET, else the reference stack's).",
)  # fmt: skip


def _load(target_file: str | None) -> tuple[Selection, LoadedTarget]:
    """The selected, valid target; prints its problems and exits 2 otherwise."""
    try:
        selection = select_target(target_file)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    loaded, problems = check_target(selection.path)
    if loaded is None:
        click.echo(f"target: {selection.describe()}: invalid")
        for problem in problems:
            click.echo(str(problem))
        sys.exit(2)
    return selection, loaded


def summary(target: Target) -> str:
    """One line: what the target has (``2 livekit nodes, redis via sentinel, ...``)."""
    redis = "redis via sentinel" if target.redis.sentinel else "redis direct"
    parts = [f"{len(target.livekit.nodes)} livekit node(s)", redis,
             f"tls proxy {target.tls_proxy.kind}"]  # fmt: skip
    if target.resolver is not None:
        fault = "may fault" if target.resolver.may_fault else "may not fault"
        parts.append(f"resolver {target.resolver.kind} ({fault})")
    else:
        parts.append("no resolver")
    parts.append("toxiproxy" if target.toxiproxy is not None else "no toxiproxy")
    parts.append(target.runtime.describe())
    return ", ".join(parts)


@click.group("target")
def target() -> None:
    """The deployment under test: show and check its target file (docs/targets.md)."""


@target.command("show")
@_target_option
def show(target_file: str | None) -> None:
    """Print the selected target, its secrets masked, and the settings it gives."""
    selection, loaded = _load(target_file)
    click.echo(f"target: {selection.describe()}")
    data = loaded.target.model_dump(mode="json", exclude_none=True)
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
    click.echo("secrets:")
    for key, ref in loaded.target.secret_refs().items():
        try:
            secrets.resolve(ref, loaded.folder)
        except secrets.SecretUnavailable as exc:
            click.echo(f"  {key}: does not resolve: {exc}")
        else:
            click.echo(f"  {key}: {ref.describe()} -> {secrets.MASK}")
    click.echo("settings:")
    for key, value in settings_values(loaded, resolve_secrets=False).items():
        shown = list(value) if isinstance(value, tuple) else value
        click.echo(f"  {key}: {shown!r}")
    for key in _SECRET_SETTINGS:
        click.echo(f"  {key}: {secrets.MASK}")


def _overrides(selection: Selection) -> None:
    """Say which settings the environment sets over the target's: they win (every command
    and activity reads them first), so a stray export must not go unnoticed."""
    import os

    from lkchaos.settings import EMPTY_IS_A_VALUE, ENV_KEYS, default_state_dir, run_dir_for

    found = [f"{name} (sets {key}" + ("" if os.environ[name] else ' to ""') + ")"
             for key, name in ENV_KEYS.items()
             if os.environ.get(name) or (key in EMPTY_IS_A_VALUE and name in os.environ)]
    if found:
        click.echo(f"overridden by the environment: {', '.join(found)}; unset them to use the "
                   "target's values")  # fmt: skip
    state_dir = default_state_dir()
    run_dir = run_dir_for(state_dir, selection)
    lock = "" if run_dir != state_dir else ", run lock"
    click.echo(f"state folder: {state_dir} (the fault ledger{lock} and audit log; set "
               "LKCHAOS_STATE_DIR to keep one whatever folder you run from)")
    if run_dir != state_dir:
        click.echo(f"run folder: {run_dir} (this target's run and game day locks and "
                   "room-state snapshots: runs on other targets from the same state folder go "
                   "on beside its own)")


def _scoped(what: str) -> str:
    """``role R`` or ``link L`` for a check of one role's container or one Toxiproxy link
    (it stops only the activities that name it), else ``""``."""
    if what.startswith("role "):
        return what.removeprefix("role ")
    if what.startswith("toxiproxy link "):
        return "link " + what.removeprefix("toxiproxy link ")
    return ""


def _experiments(given: tuple[str, ...]) -> list[Path]:
    if given:
        return [Path(item) for item in given]
    root = find_root()
    return sorted((root / "experiments").glob("*.json")) if root is not None else []


@target.command("check")
@_target_option
@click.option("--offline", is_flag=True, help="Validate the file only; reach nothing.")
@click.argument("experiments", nargs=-1, type=click.Path(exists=True, dir_okay=False))
def check(target_file: str | None, offline: bool, experiments: tuple[str, ...]) -> None:
    """Validate the target, reach what it names, and say which activities can run on it and
    which EXPERIMENTS apply to it (default: the checkout's experiments/*.json)."""
    selection, loaded = _load(target_file)
    click.echo(f"target: {selection.describe()}")
    click.echo(f"valid: {summary(loaded.target)}")
    _overrides(selection)
    failed: set[str] = set()
    missing_roles: dict[str, str] = {}
    if offline:
        click.echo("reachability: not checked (--offline)")
    else:
        checks = reach.reach(loaded)
        click.echo(f"reachability: {sum(c.ok for c in checks)} of {len(checks)} ok")
        for found in checks:
            click.echo(f"  {found}")
        # A role whose container is missing stops the activities that name it, not every
        # activity of the runtime (the engine answered).
        missing_roles = {_scoped(found.what): found.detail for found in checks
                         if not found.ok and _scoped(found.what)}  # fmt: skip
        failed = {found.component for found in checks
                  if not found.ok and not _scoped(found.what)}  # fmt: skip
    activities = needs.catalogue()
    verdicts: dict[str, list[str]] = {}
    for activity in activities:
        verdicts[activity] = (needs.missing(loaded.target, activity)
                              or needs.unreachable(activity, failed))
    can = sum(not reasons for reasons in verdicts.values())
    click.echo(f"activities: {can} of {len(activities)} can run on this target")
    for activity, reasons in verdicts.items():
        click.echo(f"  {'ok' if not reasons else 'no':<3} {activity}"
                   + (f": {'; '.join(reasons)}" if reasons else ""))  # fmt: skip
    files = _experiments(experiments)
    if not files:
        click.echo("experiments: not listed: no lkchaos checkout here (run from it, set "
                   "LKCHAOS_ROOT to it, or name the experiment files)")  # fmt: skip
    else:
        verdicts_by_file = applies.check_files(files, loaded, frozenset(failed),
                                               missing_roles)  # fmt: skip
        fit = sum(not why for why in verdicts_by_file.values())
        click.echo(f"experiments: {fit} of {len(files)} apply to this target"
                   + (" and can reach what they use" if failed or missing_roles else ""))
        for path, why in verdicts_by_file.items():
            click.echo(f"  {'ok' if not why else 'no':<3} {path.name}")
            for reason in why:
                click.echo(f"        - {reason}")
    if failed or missing_roles:
        sys.exit(1)
