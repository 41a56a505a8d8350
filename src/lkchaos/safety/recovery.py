"""Put the deployment back: undo the ledger, then sweep for anything lkchaos-shaped.

This is ``lkchaos recover`` (and the ``recover`` action): it undoes every run's faults,
retrying undos that failed before. It refuses while another process holds the run lock (an
experiment is running; ``--force`` overrides), since it would undo that run's faults
mid-run. The safety control at the end of a run does not sweep: it
undoes that run's own ledger entries only (``ledger.undo_all(..., run_id=...)``).

The sweep covers what a runner killed mid-fault could leave without a ledger entry:
Toxiproxy toxics named ``lkchaos_*`` and disabled links of the target (``toxiproxy.links``),
paused or stopped containers that play a role on the target (containers it does not describe,
such as one-shot jobs, are left alone) and the pressure sidecars still loading them,
lkchaos's iptables rules and qdiscs in those containers (and network sidecars left behind),
certificates swapped by ``lkchaos.tls`` (their originals are kept in the state folder),
lkchaos's marked lines in the resolver's hosts file and configuration, lkchaos's own rooms
left on LiveKit nodes that are gone (:mod:`lkchaos.livekit.dead_nodes`), and a run lock whose
process is gone. A component the target does not have (no Toxiproxy, no resolver lkchaos may
fault) is not swept.
"""

from __future__ import annotations

from typing import Any

from lkchaos.errors import LkChaosError
from lkchaos.safety import ledger, runlock
from lkchaos.settings import Settings

TOXIC_PREFIX = "lkchaos_"


def _sweep_toxiproxy(settings: Settings) -> list[dict[str, Any]]:
    from lkchaos.toxiproxy.client import ToxiproxyClient

    done: list[dict[str, Any]] = []
    if not settings.toxiproxy_url:
        return done
    links = set(settings.toxiproxy_links.values())
    with ToxiproxyClient(settings.toxiproxy_url) as toxi:
        for name, proxy in toxi.proxies().items():
            for toxic in proxy.get("toxics") or []:
                if str(toxic.get("name", "")).startswith(TOXIC_PREFIX):
                    toxi.remove_toxic(name, toxic["name"])
                    done.append({"fault": f"toxic {toxic['name']} on {name}",
                                 "outcome": "removed"})
            if not proxy.get("enabled", True) and name in links:
                toxi.set_enabled(name, True)
                done.append({"fault": f"proxy {name} disabled", "outcome": "enabled"})
    return done


def _described(settings: Settings, client: Any) -> list[tuple[str, Any]]:
    """The target's containers that play a role, harness excluded, with their runtime names
    (every replica of a scaled service)."""
    from lkchaos import roles
    from lkchaos.docker.client import runtime_replicas

    mapped = {name for members in settings.roles.values() for name in members}
    mapped -= roles.harness(settings)
    return [(name, container) for name, container in runtime_replicas(client, settings)
            if name in mapped]  # fmt: skip


def _sweep_pressure(client: Any, names: set[str]) -> list[dict[str, Any]]:
    """Remove the running pressure sidecars (CPU or memory load, up to an hour) of the
    target's containers ``names``; another target's are left alone."""
    from docker.errors import NotFound

    from lkchaos.stress.load import STRESS_LABEL

    done = []
    for found in client.containers.list(filters={"label": STRESS_LABEL}):
        loaded = str((found.labels or {}).get(STRESS_LABEL, ""))
        if loaded not in names:
            continue
        try:
            found.remove(force=True)
        except NotFound:
            continue  # its load ended meanwhile and the engine removed it
        done.append({"fault": f"pressure sidecar {found.name} on {loaded}",
                     "outcome": "removed"})
    return done


def _sweep_containers(settings: Settings) -> list[dict[str, Any]]:
    from lkchaos.docker.client import container_state, docker_session

    done = []
    with docker_session() as client:
        described = _described(settings, client)
        done += _sweep_pressure(client, {name for name, _ in described})
        for name, container in described:
            state = container_state(container)["state"]
            if state == "paused":
                container.unpause()
                done.append({"fault": f"{name} paused", "outcome": "unpaused"})
            elif state in ("exited", "created", "dead"):
                container.start()
                done.append({"fault": f"{name} {state}", "outcome": "started"})
    return done


def _sweep_network(settings: Settings) -> list[dict[str, Any]]:
    """Remove every lkchaos rule and qdisc from the target's running containers. Without the
    sidecar image on this engine no network fault can have been injected here, and only
    leftover sidecars are looked for."""
    from lkchaos.docker.client import docker_session
    from lkchaos.network import sidecar

    with docker_session() as client:
        done = [{"fault": f"network sidecar {name} left behind", "outcome": "removed"}
                for name in sidecar.remove_leftover_sidecars(client)]  # fmt: skip
        if not sidecar.image_present(client):
            return done
        for name, container in _described(settings, client):
            if container.status != "running":
                continue
            try:
                found = sidecar.clear(client, container)
            except LkChaosError as exc:
                done.append({"fault": f"network faults on {name}", "outcome": f"error: {exc}"})
                continue
            done += [{"fault": f"{r['kind']} rule on {name}: {r['rule']}", "outcome": "removed"}
                     for r in found["rules"]]  # fmt: skip
            done += [{"fault": f"qdisc {q['qdisc']} on {name} {q['device']}",
                      "outcome": "removed"} for q in found["qdiscs"]]  # fmt: skip
    return done


def _sweep_tls(settings: Settings) -> list[dict[str, Any]]:
    from lkchaos.tls.rotation import sweep

    return sweep(settings)


def _sweep_dns(settings: Settings) -> list[dict[str, Any]]:
    from lkchaos.dns.client import sweep

    return sweep(settings)


def _sweep_rooms(settings: Settings) -> list[dict[str, Any]]:
    from lkchaos.livekit.dead_nodes import close_own_rooms

    return close_own_rooms(settings)


class RunInProgress(LkChaosError):
    """Another process holds the stack's run lock: an experiment is running."""


def _refusal(holder: runlock.Holder | None) -> RunInProgress:
    who = ("another runner taking the lock" if holder is None
           else f"{holder.title!r} (pid {holder.pid}, since {holder.started})" if holder.pid
           else holder.title)  # fmt: skip
    return RunInProgress(
        f"an experiment is running against this stack: {who}. Recovering now would undo its "
        "faults in the middle of its run. Wait for it to end (its own cleanup undoes its "
        "faults), or stop it; `lkchaos recover --force` recovers anyway."
    )


def recover(
    settings: Settings, configuration: dict[str, Any] | None = None, thorough: bool = True,
    force: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Undo and sweep; returns one entry per thing found, with what was done about it.

    Holds the run lock while it works, so an experiment started meanwhile is refused rather
    than having its faults undone under it; refused (:class:`RunInProgress`) while another
    process holds the lock, unless ``force``. ``thorough`` adds the network sweep, which
    looks inside every container (about 0.35 s each). A fault whose undo fails again stays
    in the ledger, its ``attempts`` counted. A damaged ledger is kept aside (see
    :mod:`lkchaos.safety.ledger`), reported, and the sweeps still run.
    """
    if force:
        report = _undo_and_sweep(settings, configuration, thorough)
        if runlock.holder(settings.run_dir) is None:
            stale = runlock.force_release(settings.run_dir)
            if stale is not None:
                report.append(_stale_entry(stale))
        return report
    own_run = runlock.held_here(settings.run_dir)  # the recover action inside a run
    named = runlock.named(settings.run_dir)
    note = None
    if not own_run:
        try:
            note = runlock.acquire(settings.run_dir, "lkchaos recover")
        except runlock.LockHeld:
            raise _refusal(runlock.holder(settings.run_dir)) from None
    try:
        report = _undo_and_sweep(settings, configuration, thorough)
    finally:
        if not own_run:
            runlock.release(settings.run_dir)
    if note is not None and named is not None:
        report.append(_stale_entry(named))
    return report


def _stale_entry(stale: runlock.Holder) -> dict[str, Any]:
    return {"fault": f"stale run lock of {stale.title!r} (pid {stale.pid})",
            "outcome": "released"}


def _undo_and_sweep(
    settings: Settings, configuration: dict[str, Any] | None, thorough: bool
) -> list[dict[str, Any]]:
    try:
        report = ledger.undo_all(settings.state_dir, configuration)
    except ledger.LedgerDamaged as exc:
        report = [{"fault": "damaged fault ledger", "outcome": f"error: {exc}"}]
    sweeps = [_sweep_toxiproxy, _sweep_containers, _sweep_tls, _sweep_dns, _sweep_rooms]
    if thorough:
        sweeps.insert(2, _sweep_network)
    for sweep in sweeps:
        try:
            report += sweep(settings)
        except LkChaosError as exc:
            report.append({"fault": f"could not sweep ({sweep.__name__[7:]})",
                           "outcome": f"error: {exc}"})
    return report
