"""Service state and health of the reference stack, waiting for it, and cross-checks.

State and health come from the Docker engine (compose healthchecks); the cross-checks look
inside: LiveKit nodes registered in Redis, Sentinel's master and replicas, Toxiproxy's proxies,
the resolver's answer for the public name.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker.errors

from lkchaos.errors import LkChaosError, ServiceUnhealthy, StackError
from lkchaos.livekit import keys
from lkchaos.settings import Settings
from lkchaos.stack import layout
from lkchaos.stack.compose import Compose


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    state: str  # running, exited, paused, restarting, created, missing
    health: str  # healthy, unhealthy, starting, none
    #: The first line of what the last health check printed ("" without one): why it failed.
    check: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "none")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def service_statuses(compose: Compose, client: Any) -> list[ServiceStatus]:
    containers = compose.containers(client)
    statuses = []
    for service in layout.SERVICES:
        container = containers.get(service)
        if container is None:
            statuses.append(ServiceStatus(service, "missing", "none"))
            continue
        try:
            container.reload()
        except docker.errors.NotFound:  # removed since listed: compose is replacing it
            statuses.append(ServiceStatus(service, "missing", "none"))
            continue
        state = container.attrs.get("State", {})
        health = state.get("Health") or {}
        statuses.append(ServiceStatus(service, str(state.get("Status", "unknown")),
                                      str(health.get("Status", "none")), _last_check(health)))
    return statuses


def _last_check(health: dict[str, Any]) -> str:
    """The first line of the last health check's output (Docker's ``State.Health.Log``)."""
    log = health.get("Log") or []
    output = str(log[-1].get("Output") or "").strip() if log else ""
    return output.splitlines()[0][:200] if output else ""


def _described(st: ServiceStatus) -> str:
    """``running (unhealthy)``, with the last health check's output when there is one."""
    return f"{st.state} ({st.health}{': ' + st.check if st.check else ''})"


def wait_healthy(
    compose: Compose,
    client: Any,
    timeout: float,
    say: Callable[[str], None],
    starter: subprocess.Popen[str] | None = None,
) -> list[ServiceStatus]:
    """Poll until every service is running and healthy; say each change as it happens.

    ``starter`` is the ``docker compose up`` still running, if any: its failure ends the wait,
    and the wait is not over before it is.
    A service that turns unhealthy before it was ever healthy is restarted once (said, with
    its health check's output): on a machine whose cores are taken by others, a start can
    miss its health check's window (the agent registering with LiveKit), and a process that
    hung starting gets a second start. Unhealthy again, or unhealthy after it had been
    healthy, ends the wait.
    Raises ServiceUnhealthy naming the first service that exited, turned unhealthy, or was
    still not healthy at the deadline, with its health check's output and last log lines.
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, str]] = {}
    been_healthy: set[str] = set()
    restarted: set[str] = set()
    started = time.monotonic()
    while True:
        statuses = service_statuses(compose, client)
        for st in statuses:
            if st.ok:
                been_healthy.add(st.service)
            if seen.get(st.service) != (st.state, st.health):
                seen[st.service] = (st.state, st.health)
                ready = sum(1 for s in statuses if s.ok)
                elapsed = time.monotonic() - started
                say(f"[{elapsed:5.1f}s {ready:2d}/{len(statuses)}] {st.service}: "
                    f"{st.state}{'' if st.health == 'none' else ', ' + st.health}")
        if starter is not None and starter.poll() not in (None, 0):
            output = starter.stdout.read() if starter.stdout else ""
            raise StackError(f"`docker compose up` failed:\n{output.strip()}")
        # Healthy counts once `docker compose up` is done: until then the containers seen may
        # be the ones it is about to replace (a changed setting, a new image).
        if all(st.ok for st in statuses) and (starter is None or starter.poll() is not None):
            return statuses
        # While `docker compose up` runs, containers it replaces stop, turn unhealthy (their
        # dependencies were replaced first) and are removed: compose itself fails on a
        # dependency that does not become healthy. Judge states once it is done.
        composing = starter is not None and starter.poll() is None
        for st in statuses if not composing else []:
            if st.state == "removing":
                continue
            if (st.state == "running" and st.health == "unhealthy"
                    and st.service not in been_healthy | restarted):  # fmt: skip
                say(f"{st.service}: unhealthy before it was ever healthy "
                    f"({st.check or 'its health check failed'}); restarting it once")
                compose.run("restart", st.service, timeout=120)
                restarted.add(st.service)
                seen.pop(st.service, None)
                continue
            if st.state in ("exited", "dead") or st.health == "unhealthy":
                again = " again, after a restart" if st.service in restarted else ""
                raise ServiceUnhealthy(
                    st.service, _described(st) + again, compose.logs(client, st.service),
                    f"see `lkchaos stack logs {st.service}`",
                )
        if time.monotonic() > deadline:
            late = next(st for st in statuses if not st.ok)
            raise ServiceUnhealthy(
                late.service, f"still {late.state}/{late.health} after {timeout:.0f} s"
                + (f" ({late.check})" if late.check else ""),
                compose.logs(client, late.service),
                "raise --timeout if the machine is slow, or look at its logs",
            )
        time.sleep(1.0)


def _check(name: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = fn()
    except (LkChaosError, OSError) as exc:
        return Check(name, False, str(exc).splitlines()[0])
    except Exception as exc:  # a backend library's own error type: report, don't crash status
        return Check(name, False, f"{type(exc).__name__}: {exc}")
    return Check(name, ok, detail)


def cross_checks(settings: Settings) -> list[Check]:
    """Look inside the stack: registration, replication, proxies, DNS."""
    from lkchaos.dns.client import resolve
    from lkchaos.redis import client as redis_client
    from lkchaos.redis import probes as redis_probes
    from lkchaos.toxiproxy.client import ToxiproxyClient

    def nodes() -> tuple[bool, str]:
        with redis_client.primary(settings) as r:
            count = int(r.hlen(keys.NODES))
        return count >= 2, f"{count} LiveKit node(s) registered in Redis"

    def sentinel() -> tuple[bool, str]:
        # Replicas and Sentinels count only when up as Sentinel sees them (SENTINEL REPLICAS
        # and SENTINELS flags), not by SENTINEL MASTER's counts of every one it knows of.
        state = redis_probes.assess(settings)
        if not state["sentinels"]:
            return False, "no Sentinel answered"
        up, known = state["replicas"], state["replicas_known"]
        detail = (f"master {state['master'] or ' or '.join(state['masters'])} per "
                  f"{state['sentinels']} Sentinel(s), {up} of {known} replica(s) up")
        if not state["ok"]:
            return False, f"{detail}: {state['reason']}"
        down = [*state["replicas_down"], *(f"Sentinel {a} not answering"
                                           for a in state["sentinels_down"])]
        return True, detail + (f" (down: {'; '.join(down)})" if down else "")

    def proxies() -> tuple[bool, str]:
        with ToxiproxyClient(settings.toxiproxy_url) as toxi:
            found = toxi.proxies()
        missing = sorted(set(layout.TOXIPROXY_LINKS) - set(found))
        disabled = sorted(n for n, p in found.items() if not p.get("enabled", True))
        detail = f"{len(found)} proxies"
        if missing:
            detail += f", missing: {', '.join(missing)}"
        if disabled:
            detail += f", disabled: {', '.join(disabled)}"
        return not missing and not disabled, detail

    def dns() -> tuple[bool, str]:
        name = f"lk.{settings.domain}"
        answer = resolve(name, settings.dns_server)
        return bool(answer.addresses), f"{name} -> {', '.join(answer.addresses) or answer.rcode}"

    return [
        _check("livekit nodes", nodes),
        _check("sentinel", sentinel),
        _check("toxiproxy", proxies),
        _check("dns", dns),
    ]


def require_running(compose: Compose, client: Any) -> None:
    """Raise StackError naming what is not up, with what to do."""
    bad = [st for st in service_statuses(compose, client) if not st.ok]
    if bad:
        listed = ", ".join(f"{st.service} ({st.state}/{st.health})" for st in bad)
        raise StackError(f"the stack is not healthy: {listed}. Run `lkchaos stack up`.")
