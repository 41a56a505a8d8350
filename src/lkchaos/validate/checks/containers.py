"""Service startup: the target's containers started, healthy, quiet, connected, configured.

The containers are the target's (:func:`lkchaos.docker.client.runtime_replicas`: compose
services of its project, or containers by name or label) and their roles are the target's
(``tls_proxy``, ``livekit_node``, ``redis_*``, ``ingress``, ``egress``). Each assessment is a
pure function of what ``docker inspect`` and the logs say, so that it is tested on its own;
the checks only gather those facts (once per run: :meth:`Context.fact`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lkchaos.validate.model import Context, Finding, check

#: A log line that reports an error: a JSON or logfmt level, a bare upper-case level word,
#: a Go panic or a Python traceback.
ERROR_LINE = re.compile(
    r'"(?:level|severity)"\s*:\s*"(?:error|fatal|panic|critical)"'
    r"|\blevel=(?:error|fatal|panic)\b|^panic: |Traceback \(most recent call last\)",
    re.IGNORECASE)
#: Upper-case words matched case-sensitively (``errors=0`` or "no error" is not an error line).
_BARE = re.compile(r"\b(?:ERROR|FATAL|PANIC|CRITICAL)\b")
#: Environment variables whose empty value is legitimate.
EMPTY_OK = ("NO_PROXY", "no_proxy", "PYTHONDONTWRITEBYTECODE")
MAX_LOG_LINES = 5000
#: Error-level lines that are known to be harmless, each for its reason: pion (LiveKit's
#: WebRTC stack) logs a trickled ICE candidate of an earlier ICE restart at ERROR; Caddy's
#: layer 4 app logs a client that hung up before its TLS hello (a port scan, a TCP health
#: check); node_exporter in a container has no udev database; redis_exporter asks a Sentinel
#: for LATENCY, which Sentinel does not have (it says "logged once only").
BENIGN = re.compile(
    r"dropping candidate with ufrag .* doesn't match the current ufrags"
    r"|caddy\.listeners\.layer4.*\"msg\":\"matching connection\".*"
    r"(?:connection reset by peer|EOF|i/o timeout)"
    r"|disabling udev device properties"
    r"|LOGGED ONCE ONLY: cmd LATENCY LATEST"
)
#: A TLS alert the peer sent (Go's crypto/tls words it "remote error: tls: <alert>"): a client
#: refused the certificate served (a client without the deployment's CA, a scanner). It is
#: the client's verdict, not the server failing, so it is not an error line of the server's;
#: :func:`assess_logs` reports these handshakes as a warning of their own.
PEER_REFUSED = re.compile(r"remote error: tls: [a-z ]+")


@dataclass(frozen=True)
class Box:
    """What lkchaos read of one container: its runtime ``name``, container ``cname``,
    ``attrs`` (``docker inspect``) and ``logs`` since it started."""

    name: str
    cname: str
    attrs: dict[str, Any]
    logs: str = ""
    role: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.attrs.get("State") or {})


#: Error lines logged while an lkchaos fault was active, or this long after it was undone
#: (the deployment recovering from it), are lkchaos's own doing: set apart, not failed.
RECOVERY_GRACE_S = 180.0
#: An earlier validation run's window is extended this long (a server logs a refused client
#: a moment after the client gave up).
RUN_GRACE_S = 10.0
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ")


def error_line(logs: str, quiet: Sequence[tuple[float, float]] = ()) -> str | None:
    """The first line of ``logs`` that reports an error, or None. Lines may start with the
    engine's timestamp (``docker logs --timestamps``): one inside a ``quiet`` window (epoch
    seconds) is set apart (:func:`chaos_windows`), and the stamp is not shown."""
    for line in logs.splitlines():
        when, text = _stamped(line)
        if not _is_error(text):
            continue
        if _inside(when, quiet):
            continue
        return text.strip()
    return None


def peer_refusals(logs: str, quiet: Sequence[tuple[float, float]] = ()) -> list[str]:
    """The TLS alerts (:data:`PEER_REFUSED`, e.g. ``remote error: tls: unknown certificate
    authority``) peers sent in ``logs`` outside the ``quiet`` windows, oldest first."""
    found = []
    for line in logs.splitlines():
        when, text = _stamped(line)
        match = PEER_REFUSED.search(text)
        if match is None or _inside(when, quiet):
            continue
        found.append(match.group(0))
    return found


def set_apart(logs: str, quiet: Sequence[tuple[float, float]]) -> int:
    """How many error lines of ``logs`` fall inside the ``quiet`` windows."""
    count = 0
    for line in logs.splitlines():
        when, text = _stamped(line)
        if _is_error(text) and _inside(when, quiet):
            count += 1
    return count


def _inside(when: float | None, quiet: Sequence[tuple[float, float]]) -> bool:
    """Whether a line stamped ``when`` (None: unstamped, never) falls in a ``quiet`` window."""
    return when is not None and any(start <= when <= end for start, end in quiet)


def _stamped(line: str) -> tuple[float | None, str]:
    match = _STAMP.match(line)
    if match is None:
        return None, line
    return float(_since(match.group(1))), line[match.end():]


def chaos_windows(state_dir: str, now: float | None = None) -> list[tuple[float, float]]:
    """When lkchaos's own faults were in effect, from the audit log of ``state_dir``: per
    run, its first injection (less 5 s) to its last undo plus :data:`RECOVERY_GRACE_S` (to
    ``now`` for a run with a fault never undone), as epoch seconds."""
    import datetime as dt

    from lkchaos.safety import audit

    now = time.time() if now is None else now
    runs: dict[str, list[tuple[float, str]]] = {}
    for entry in audit.read(state_dir):
        try:
            when = dt.datetime.fromisoformat(str(entry.get("time"))).timestamp()
        except ValueError:
            continue
        runs.setdefault(str(entry.get("run") or ""), []).append((when, str(entry.get("outcome"))))
    windows = []
    for events in runs.values():
        injected = sum(1 for _, what in events if what == "injected")
        undone = sum(1 for _, what in events if what in ("undone", "recovered", "not injected"))
        start = min(t for t, _ in events) - 5.0
        end = now if injected > undone else max(t for t, _ in events) + RECOVERY_GRACE_S
        windows.append((start, min(end, now)))
    return windows


def _is_error(line: str) -> bool:
    if BENIGN.search(line) or PEER_REFUSED.search(line):
        return False
    return _BARE.search(line) is not None or ERROR_LINE.search(line) is not None


def assess_started(
    boxes: Sequence[Box], what: str, quiet: Sequence[tuple[float, float]] = ()
) -> Finding:
    """Each of ``boxes`` running, not restarting, no error line since it started (outside
    the ``quiet`` windows: lkchaos's own faults, see :func:`chaos_windows`)."""
    problems, fine = [], []
    for box in boxes:
        state = box.state
        status = str(state.get("Status") or "unknown")
        restarts = int(box.attrs.get("RestartCount") or 0)
        if status != "running":
            why = f"exit code {state.get('ExitCode')}" if status == "exited" else status
            problems.append(f"{box.name} is {status} ({why})")
            continue
        if state.get("OOMKilled"):
            problems.append(f"{box.name} was killed for lack of memory")
        if restarts:
            problems.append(f"{box.name} restarted {restarts} time(s)")
        line = error_line(box.logs, quiet)
        if line is not None:
            problems.append(f"{box.name} logged: {line[:200]}")
        if not (restarts or line or state.get("OOMKilled")):
            fine.append(f"{box.name} up since {str(state.get('StartedAt', '?'))[:19]}")
    data = {"containers": [b.name for b in boxes], "problems": problems}
    if problems:
        return Finding("fail", "; ".join(problems), data)
    return Finding("pass", f"{what}: " + ", ".join(fine) + ", no error line in its logs", data)


def assess_healthy(boxes: Sequence[Box]) -> Finding:
    unhealthy, unchecked, healthy = [], [], []
    for box in boxes:
        state = box.state
        health = (state.get("Health") or {}).get("Status")
        if state.get("Status") != "running":
            unhealthy.append(f"{box.name} {state.get('Status')}")
        elif health is None:
            unchecked.append(box.name)
        elif health != "healthy":
            log = (state.get("Health") or {}).get("Log") or []
            last = str(log[-1].get("Output", "")).strip()[:120] if log else ""
            unhealthy.append(f"{box.name} {health}" + (f" ({last})" if last else ""))
        else:
            healthy.append(box.name)
    data = {"healthy": healthy, "unhealthy": unhealthy, "no_healthcheck": unchecked}
    if unhealthy:
        return Finding("fail", f"not healthy: {', '.join(unhealthy)}", data)
    if unchecked:
        return Finding("warn", f"{len(healthy)} healthy; without a healthcheck: "
                               f"{', '.join(unchecked)}", data)  # fmt: skip
    return Finding("pass", f"all {len(healthy)} containers healthy", data)


def assess_logs(boxes: Sequence[Box], quiet: Sequence[tuple[float, float]] = ()) -> Finding:
    """Fail on a container's error line (outside ``quiet``); warn when no container logged
    one but clients refused TLS handshakes (:data:`PEER_REFUSED`), naming the alerts."""
    found = [(b.name, line) for b in boxes if (line := error_line(b.logs, quiet)) is not None]
    apart = sum(set_apart(b.logs, quiet) for b in boxes)
    refused = {b.name: alerts for b in boxes if (alerts := peer_refusals(b.logs, quiet))}
    data = {"errors": {name: line for name, line in found}, "set_apart": apart,
            "tls_refused_by_clients": {name: len(a) for name, a in refused.items()}}
    note = (f" ({apart} error lines logged during lkchaos's own faults or the "
            f"{RECOVERY_GRACE_S:g} s after them set apart)") if apart else ""
    if refused:
        each = "; ".join(f"{name}: {len(alerts)} (last: {alerts[-1]})"
                         for name, alerts in refused.items())
        note += (f"; TLS handshakes refused by clients: {each}: a client that does not trust "
                 "the certificate served; if the TLS items pass, the client lacks the CA")
    if found:
        shown = "; ".join(f"{name}: {line[:160]}" for name, line in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        return Finding("fail", f"{len(found)} of {len(boxes)} containers logged errors since "
                               f"they started: {shown}{more}{note}", data)  # fmt: skip
    return Finding("warn" if refused else "pass",
                   f"no error line in the logs of {len(boxes)} containers since they "
                   f"started{note}", data)  # fmt: skip


def assess_env(boxes: Sequence[Box]) -> Finding:
    """Every variable a container was given has a value (names only: values are secret)."""
    empty = []
    total = 0
    for box in boxes:
        for entry in (box.attrs.get("Config") or {}).get("Env") or []:
            name, _, value = str(entry).partition("=")
            total += 1
            if value == "" and name not in EMPTY_OK:
                empty.append(f"{box.name}: {name}")
    data = {"empty": empty, "variables": total}
    if empty:
        return Finding("fail", f"empty environment variables: {', '.join(empty)}: set them "
                               "in the deployment's environment file", data)  # fmt: skip
    return Finding("pass", f"{total} environment variables in {len(boxes)} containers, "
                           "none empty", data)  # fmt: skip


def config_files(box: Box) -> list[str]:
    """The files bound into a container (its configuration), by their path inside it."""
    return [str(m.get("Destination")) for m in box.attrs.get("Mounts") or []
            if m.get("Type") == "bind" and m.get("Destination")]  # fmt: skip


def assess_config(results: dict[str, list[tuple[str, bool]]], boxes: Sequence[Box]) -> Finding:
    """``results``: runtime name -> (mounted path, readable in the container)."""
    missing = [f"{name}: {path}" for name, pairs in results.items() for path, ok in pairs
               if not ok]  # fmt: skip
    failed = [b.name for b in boxes if error_line(b.logs) and
              re.search(r"config", error_line(b.logs) or "", re.IGNORECASE)]  # fmt: skip
    count = sum(len(p) for p in results.values())
    data = {"mounted": {n: [p for p, _ in pairs] for n, pairs in results.items()},
            "unreadable": missing, "config_errors": failed}  # fmt: skip
    if missing or failed:
        parts = ([f"not readable in the container: {', '.join(missing)}"] if missing else [])
        parts += [f"a configuration error in the logs of {', '.join(failed)}"] if failed else []
        return Finding("fail", "; ".join(parts), data)
    if not count:
        return Finding("warn", "no configuration file is mounted into any container: "
                               "configuration is baked into the images or the environment", data)
    return Finding("pass", f"{count} configuration files mounted and readable in "
                           f"{len(results)} containers, no configuration error logged", data)


def assess_resolution(source: str, answers: dict[str, str | None],
                      errors: dict[str, str] | None = None,
                      flapped: dict[str, str] | None = None) -> Finding:  # fmt: skip
    """``answers``: name -> address it resolved to from ``source`` (None: did not resolve, its
    resolver's error in ``errors`` where known). ``flapped``: names that failed (with the
    error) and resolved when asked again: a warning, the resolver's hiccup said."""
    failed = sorted(n for n, a in answers.items() if not a)
    data = {"from": source, "answers": answers, "errors": errors or {},
            "resolved_on_retry": flapped or {}}  # fmt: skip
    if failed:
        why = {(errors or {}).get(n, "") for n in failed} - {""}
        said = f" ({'; '.join(sorted(why)[:2])})" if why else ""
        return Finding("fail", f"from {source}, these names do not resolve: {', '.join(failed)}"
                               f"{said}", data)  # fmt: skip
    shown = ", ".join(f"{n} → {a}" for n, a in list(answers.items())[:6])
    more = f" (and {len(answers) - 6} more)" if len(answers) > 6 else ""
    if flapped:
        names = ", ".join(sorted(flapped))
        first = sorted(set(flapped.values()))[0]
        return Finding("warn", f"from {source}, {len(answers)} names resolve, but {names} "
                               f"failed first ({first}) and resolved only when asked again: "
                               "the resolver is not answering reliably", data)  # fmt: skip
    return Finding("pass", f"from {source}, {len(answers)} names resolve: {shown}{more}", data)


def assess_reach(source: str, answers: dict[str, dict[int, str]]) -> Finding:
    """``answers``: service -> port -> ``ok`` or why the connection failed. A service is
    reached when one of its ports accepts a connection; one whose every port refuses is up
    on the network with nothing listening; a timeout or an unreachable host is no path."""
    data = {"from": source, "answers": answers}
    if not answers:
        return Finding("warn", f"no other container exposes a TCP port to connect to from "
                               f"{source}", data)  # fmt: skip
    failed = {}
    for name, ports in sorted(answers.items()):
        if not any(v == "ok" for v in ports.values()):
            failed[name] = "; ".join(f"{port}: {why}" for port, why in sorted(ports.items()))
    if failed:
        shown = ", ".join(f"{k} ({v})" for k, v in failed.items())
        return Finding("fail", f"from {source}, {len(failed)} of {len(answers)} services "
                               f"cannot be reached: {shown}", data)  # fmt: skip
    names = sorted(answers)
    return Finding("pass", f"from {source}, all {len(answers)} services accept a TCP "
                           f"connection ({', '.join(names[:8])}"
                           f"{', ...' if len(names) > 8 else ''})", data)  # fmt: skip


# Gathering ---------------------------------------------------------------------------------


def boxes(ctx: Context) -> list[Box]:
    """The target's containers with their inspect data and logs since they started."""

    def compute() -> list[Box]:
        from lkchaos.docker.client import docker_session, runtime_replicas
        from lkchaos.roles import role_of

        found = []
        with docker_session(timeout=min(ctx.timeout_s, 10.0)) as client:
            for name, container in runtime_replicas(client, ctx.settings):
                attrs = dict(container.attrs)
                started = str((attrs.get("State") or {}).get("StartedAt") or "")
                logs = ""
                if started and not started.startswith("0001"):
                    raw = container.logs(stdout=True, stderr=True, tail=MAX_LOG_LINES,
                                         since=_since(started), timestamps=True)  # fmt: skip
                    logs = raw.decode(errors="replace")
                found.append(Box(name, str(container.name), attrs, logs,
                                 role_of(ctx.settings, name)))  # fmt: skip
        if not found:
            raise RuntimeError(f"the target has no containers ({_where(ctx)}): is the "
                               "deployment up?")  # fmt: skip
        return found

    result: list[Box] = ctx.fact("containers.boxes", compute)
    return result


def _where(ctx: Context) -> str:
    from lkchaos.docker.client import describe_runtime

    return describe_runtime(ctx.settings)


def _since(started: str) -> int:
    import datetime as dt

    text = re.sub(r"\.(\d{6})\d*", r".\1", started.replace("Z", "+00:00"))
    return int(dt.datetime.fromisoformat(text).timestamp())


def with_roles(all_boxes: Iterable[Box], roles: Iterable[str]) -> list[Box]:
    wanted = set(roles)
    return [b for b in all_boxes if b.role in wanted]


def _role_check(roles: Sequence[str], what: str, optional: bool = False) -> Any:
    def run(ctx: Context) -> Finding:
        if not any(ctx.settings.roles.get(r) for r in roles):
            return Finding("n/a", f"no {what} is configured for this target (roles "
                                  f"{', '.join(roles)})")  # fmt: skip
        chosen = with_roles(boxes(ctx), roles)
        if not chosen:
            if optional:
                return Finding("n/a", f"{what} is not containerised here")
            names = ", ".join(n for r in roles for n in ctx.settings.roles.get(r, ()))
            return Finding("fail", f"no container of {what} ({names}) among {_where(ctx)}")
        return assess_started(chosen, what, quiet_windows(ctx))

    run.__name__ = "starts_" + "_".join(roles)
    return run


#: The per-service startup items: item id -> its check (by the target's roles).
CHECKS_BY_ROLE = {
    "startup.caddy-container-starts": _role_check(("tls_proxy",), "the TLS proxy"),
    "startup.livekit-container-starts": _role_check(("livekit_node",), "LiveKit"),
    "startup.redis-container-starts": _role_check(("redis_primary", "redis_replica", "sentinel"),
                                                  "Redis", optional=True),
    "startup.ingress-container-starts": _role_check(("ingress",), "Ingress"),
    "startup.egress-container-starts": _role_check(("egress",), "Egress"),
}
for _item_id, _func in CHECKS_BY_ROLE.items():
    check(_item_id)(_func)


@check("startup.containers-show-healthy")
def healthy(ctx: Context) -> Finding:
    return assess_healthy(boxes(ctx))


@check("startup.error-messages-container")
def quiet_logs(ctx: Context) -> Finding:
    return assess_logs(boxes(ctx), quiet_windows(ctx))


def quiet_windows(ctx: Context) -> list[tuple[float, float]]:
    """lkchaos's own faults (:func:`chaos_windows`), earlier validation runs and this one
    (their checks refuse weak clients and bad tokens on purpose): lines from then are set
    apart."""
    from lkchaos.validate.runner import run_windows

    own = [(ctx.started_at - 1.0, float("inf"))]

    def compute() -> list[tuple[float, float]]:
        earlier = [(a - 1.0, b + RUN_GRACE_S) for a, b in run_windows(ctx.settings.state_dir)]
        return chaos_windows(ctx.settings.state_dir) + earlier + own

    found: list[tuple[float, float]] = ctx.fact("containers.quiet", compute)
    return found


@check("startup.environment-variables-populated")
def environment(ctx: Context) -> Finding:
    return assess_env(boxes(ctx))


def _exec(ctx: Context, box: Box, argv: list[str]) -> tuple[int, str]:
    from lkchaos.docker.client import docker_session

    with docker_session(timeout=min(ctx.timeout_s, 10.0)) as client:
        container = client.containers.get(box.cname)
        code, out = container.exec_run(argv, demux=False)
    return int(code if code is not None else -1), (out or b"").decode(errors="replace")


#: Resolves each name given as an argument and connects to each host:port; one line each.
_PROBE_PY = r"""
import socket, sys
for arg in sys.argv[1:]:
    host, _, port = arg.partition("|")
    try:
        if port:
            socket.create_connection((host, int(port)), timeout=3).close(); print(arg, "ok")
        else:
            print(arg, socket.gethostbyname(host))
    except OSError as exc:
        print(arg, "!" + (type(exc).__name__ + ": " + str(exc)).replace(" ", "_"))
"""


def _prober(ctx: Context) -> Box:
    """A running container that has Python (to resolve and connect from inside)."""

    def compute() -> Box:
        for box in boxes(ctx):
            if box.state.get("Status") != "running":
                continue
            code, _ = _exec(ctx, box, ["python3", "-c", "pass"])
            if code == 0:
                return box
        raise RuntimeError("no running container of the target has python3 to resolve and "
                           "connect from: check DNS and reachability by hand")
    result: Box = ctx.fact("containers.prober", compute)
    return result


def _probe(ctx: Context, box: Box, args: list[str]) -> dict[str, str]:
    code, out = _exec(ctx, box, ["python3", "-c", _PROBE_PY, *args])
    if code != 0:
        raise RuntimeError(f"the probe in {box.name} exited {code}: {out.strip()[-200:]}")
    answers = {}
    for line in out.splitlines():
        arg, _, value = line.partition(" ")
        answers[arg] = value
    return answers


def _service_names(ctx: Context, all_boxes: Sequence[Box], source: Box) -> list[str]:
    """The names the other running containers answer to on the network (a stopped
    container has none: that is the startup items' finding, not a DNS one)."""
    names = {b.name if ctx.settings.runtime == "compose" else b.cname for b in all_boxes
             if b.name != source.name and b.state.get("Status") == "running"}  # fmt: skip
    return sorted(names)


#: Further tries of the names that did not resolve, and the seconds between them: a resolver
#: that fails a moment (the engine's embedded DNS while containers are recreated beside it)
#: is not a name that does not resolve.
RESOLVE_RETRIES = 2
RESOLVE_RETRY_S = 1.0


def _ask_again(ctx: Context, source: Box, answers: dict[str, str],
               unanswered: Callable[[], list[str]]) -> None:  # fmt: skip
    """Ask ``source`` again, up to :data:`RESOLVE_RETRIES` times :data:`RESOLVE_RETRY_S`
    apart, for what ``unanswered()`` still lists; ``answers`` takes the new answers."""
    for _ in range(RESOLVE_RETRIES):
        pending = unanswered()
        if not pending:
            return
        time.sleep(RESOLVE_RETRY_S)
        answers.update(_probe(ctx, source, pending))


@check("startup.dns-resolution-working")
def dns_from_containers(ctx: Context) -> Finding:
    all_boxes = boxes(ctx)
    source = _prober(ctx)
    names = _service_names(ctx, all_boxes, source) + [n for n in ctx.settings.tls_names if n]
    answers = _probe(ctx, source, names)

    def failed() -> list[str]:
        return [n for n in names if answers.get(n, "!no answer").startswith("!")]

    first = {n: answers.get(n, "!no answer")[1:].replace("_", " ") for n in failed()}
    _ask_again(ctx, source, answers, failed)
    errors = {n: answers.get(n, "!no answer")[1:].replace("_", " ") for n in failed()}
    resolved = {n: None if n in errors else answers[n] for n in names}
    flapped = {n: e for n, e in first.items() if n not in errors}
    return assess_resolution(source.name, resolved, errors=errors, flapped=flapped)


def exposed_tcp(box: Box) -> list[int]:
    ports = (box.attrs.get("Config") or {}).get("ExposedPorts") or {}
    return sorted(int(p.split("/")[0]) for p in ports if p.endswith("/tcp"))


@check("startup.containers-can-reach")
def reach(ctx: Context) -> Finding:
    all_boxes = boxes(ctx)
    source = _prober(ctx)
    by_name = {(b.name if ctx.settings.runtime == "compose" else b.cname): b for b in all_boxes}
    targets = [f"{name}|{port}" for name in _service_names(ctx, all_boxes, source)
               for port in exposed_tcp(by_name[name])]
    answers = _probe(ctx, source, targets) if targets else {}

    def unreached() -> list[str]:  # a service none of whose ports answered, asked again
        reached = {t.partition("|")[0] for t in targets if answers.get(t) == "ok"}
        return [t for t in targets if t.partition("|")[0] not in reached]

    _ask_again(ctx, source, answers, unreached)
    shown: dict[str, dict[int, str]] = {}
    for target in targets:
        name, _, port = target.partition("|")
        value = answers.get(target, "!no answer")
        shown.setdefault(name, {})[int(port)] = (
            "ok" if value == "ok" else value.lstrip("!").replace("_", " "))
    return assess_reach(source.name, shown)


@check("startup.configuration-files-loaded")
def configuration(ctx: Context) -> Finding:
    results: dict[str, list[tuple[str, bool]]] = {}
    all_boxes = boxes(ctx)
    for box in all_boxes:
        paths = config_files(box)
        if not paths or box.state.get("Status") != "running":
            continue
        checked = []
        for path in paths:
            code, _ = _exec(ctx, box, ["test", "-r", path])
            checked.append((path, code == 0))
        results[box.name] = checked
    return assess_config(results, all_boxes)


@check("startup.api-keys-secrets")
def keys(ctx: Context) -> Finding:
    from lkchaos.livekit.client import call

    key, _ = ctx.settings.require_keys()
    problems = []
    if ctx.settings.redis_password_problem:
        problems.append(f"the Redis password does not resolve: "
                        f"{ctx.settings.redis_password_problem}")  # fmt: skip
    answered = []
    for url in ctx.settings.livekit_node_urls:

        async def rooms(lk: Any) -> int:
            from livekit import api

            return len((await lk.room.list_rooms(api.ListRoomsRequest())).rooms)

        try:
            call(url, ctx.settings, rooms, timeout=min(ctx.timeout_s, 5.0))
            answered.append(url)
        except Exception as exc:
            problems.append(f"{url} refused or did not answer with the key: "
                            f"{type(exc).__name__}: {str(exc)[:120]}")  # fmt: skip
    data = {"api_key": key[:4] + "…", "nodes": answered}
    if problems:
        return Finding("fail", "; ".join(problems), data)
    return Finding("pass", f"API key {key[:4]}… resolves and {len(answered)} LiveKit node(s) "
                           "accept it (ListRooms)", data)  # fmt: skip

