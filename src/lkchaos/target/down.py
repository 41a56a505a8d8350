"""Whether the deployment under test is plainly down, said once in words.

A run whose steady state fails because nothing of the deployment answers, or a recovery that
cannot check the baseline, would otherwise list every probe that could not connect (the voice
prober first, whose message suggests running a prober of one's own). Down here means: no
LiveKit node of the target accepts a TCP connection on its HTTP port within a second. A node
that accepts and answers slowly, or answers ``406 Not Ready``, is not down: that is for the
probes to judge.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from lkchaos.settings import Settings

#: Seconds to wait for each node's TCP handshake.
CONNECT_TIMEOUT_S = 1.0


def _connects(url: str, timeout: float) -> str | None:
    """None when ``url``'s host and port accept a TCP connection, else why not."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        return f"not a URL with a port ({exc})"
    if not parts.hostname:
        return "not a URL with a host"
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc.strerror or exc) if not isinstance(exc, TimeoutError) else (
            f"no connection within {timeout:g} s")


def _answers(url: str, timeout: float) -> str | None:
    """None when ``url`` gives any HTTP answer within ``timeout`` seconds, else why not."""
    import httpx

    try:
        httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return f"accepts connections but gave no HTTP answer within {timeout:g} s (paused or hung?)"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def why_down(settings: Settings, timeout: float = CONNECT_TIMEOUT_S,
             http_timeout: float | None = None) -> str | None:  # fmt: skip
    """A sentence saying the deployment is down, with what to do, when none of its LiveKit
    nodes (``livekit_node_urls``) accepts a connection, or, with ``http_timeout``, gives any
    HTTP answer within that many seconds (a paused or hung node still accepts); None when
    one does, or when the target names no node. On the reference stack it names ``lkchaos
    stack up``."""
    if not settings.livekit_node_urls:
        return None
    why: list[str] = []
    for url in settings.livekit_node_urls:
        refused = _connects(url, timeout)
        if refused is None and http_timeout is not None:
            refused = _answers(url, http_timeout)
        if refused is None:
            return None
        why.append(f"{url}: {refused}")
    from lkchaos.validate.facts import reference

    fix = ("is the reference stack running? `lkchaos stack status` says; `lkchaos stack up` "
           "starts it" if reference(settings) is not None else
           "`lkchaos target check` says what of it answers")  # fmt: skip
    answering = "answers" if http_timeout is not None else "accepts a connection"
    return f"the deployment is down: no LiveKit node {answering} ({'; '.join(why)}); {fix}"


def none_running(settings: Settings) -> str | None:
    """For a target whose services run in containers on this engine: a sentence when none of
    them is running (nothing is starting either: a recovery has nothing to wait for); None
    when one is, or when the engine cannot be asked."""
    from lkchaos.docker.client import describe_runtime, docker_session, runtime_replicas

    try:
        with docker_session(timeout=5.0) as client:
            replicas = runtime_replicas(client, settings)
            running = any(str(c.status) in ("running", "restarting") for _, c in replicas)
    except Exception:  # no engine here, or not a container runtime: nothing to say
        return None
    if running:
        return None
    return f"no container of {describe_runtime(settings)} is running"
