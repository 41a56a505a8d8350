"""The one client of the voice prober's HTTP API (``lkchaos.voice.prober``).

Every request carries the credential of :mod:`lkchaos.voice.credential`. Endpoints:
``POST /round-trip`` (a caller asks a question; see :mod:`lkchaos.voice.probes`),
``POST /hold`` and ``DELETE /hold/<room>`` (participants kept connected; see
:mod:`lkchaos.livekit.actions`). Failures are raised as Chaos Toolkit's ``ActivityFailed``
with what to do: the prober unreachable (is the stack up?), the arguments refused (400), the
credential refused (401/403: the API secret given is not the prober's), anything else.
"""

from __future__ import annotations

from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed

from lkchaos.httpclient import shared_client
from lkchaos.voice.credential import authorization

__all__ = ["call"]


class NotReached(ActivityFailed):  # type: ignore[misc]
    """The request did not reach the prober (refused, not resolved, no connection within
    the timeout), or the prober refused it (its arguments, the credential): the prober did
    nothing."""


def call(url: str, secret: str, method: str, path: str, body: Any = None, *,
         timeout: float) -> dict[str, Any]:  # fmt: skip
    """``method path`` on the prober at ``url`` (``http://host:port``), within ``timeout``
    seconds; returns its JSON answer (an object). Raises :class:`NotReached` when the prober
    did nothing (the request did not reach it, or it refused it), else ActivityFailed."""
    try:
        response = shared_client().request(
            method, url.rstrip("/") + path, json=body, timeout=timeout,
            headers={"Authorization": authorization(secret)},
        )
    except httpx.HTTPError as exc:
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        raise (NotReached if unsent else ActivityFailed)(
            f"the voice prober at {url} did not answer {method} {path} "
            f"({type(exc).__name__}: {exc}). Is it running (`lkchaos target check`; on the "
            "reference stack, `lkchaos stack status`)? To run it from this machine instead, in "
            "a prober lkchaos starts itself, set voice_prober_url to \"\" (needs lkchaos[voice])."
        ) from exc
    if response.status_code in (401, 403):
        raise NotReached(
            f"the voice prober at {url} refused the credential: the LiveKit API secret given "
            "(secrets, LIVEKIT_API_SECRET or the stack's .lkchaos/) is not the one the prober "
            "was started with. Use the stack's own, or restart the prober after a key change."
        )
    if response.status_code == 400:
        error = _error(response)
        older = ("; the prober is older than this lkchaos (it does not know that field): "
                 "rebuild and restart it from the same version (`lkchaos stack up` for the "
                 "reference stack)") if "unknown" in error and "agent_name" in error else ""
        raise NotReached(f"the voice prober refused its arguments: {error} "
                             f"({method} {path}){older}")  # fmt: skip
    if response.status_code != 200:
        raise ActivityFailed(f"the voice prober failed: {response.status_code} "
                             f"{_error(response)} ({method} {path})")  # fmt: skip
    try:
        result = response.json()
    except ValueError as exc:
        raise ActivityFailed(f"the voice prober at {url} answered {method} {path} with "
                             f"something that is not JSON: {response.text[:200]!r}") from exc
    if not isinstance(result, dict):
        raise ActivityFailed(f"the voice prober at {url} answered {method} {path} with "
                             f"{type(result).__name__}, not an object")  # fmt: skip
    return result


def _error(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return response.text[:500]
