"""A thin, typed client for Toxiproxy's HTTP API with explicit timeouts.

All of lkchaos's Toxiproxy calls go through here, including the timed requests that
``link_latency`` sends through a proxy's listener. (The ``toxiproxy-python`` package keeps the
server address in process-global class attributes and sets no timeout on its requests.)

Errors are :class:`~lkchaos.errors.StackError`; an error status from the API is the subclass
:class:`ToxiproxyRefused`, which carries the status (404: no such proxy or toxic, 409: the
toxic already exists, 400: a malformed toxic); a proxy name that the server does not know,
checked before acting, is :class:`UnknownProxy`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings

TIMEOUT = httpx.Timeout(5.0)

#: Prefix of the name of every toxic lkchaos adds.
PREFIX = "lkchaos_"
STREAMS = ("upstream", "downstream")

#: Toxic type -> attribute -> (unit, minimum, required). Toxiproxy ignores unknown attributes
#: and reads missing ones as 0, so the actions check both rather than fail silently.
TOXICS: dict[str, dict[str, tuple[str, int, bool]]] = {
    "latency": {"latency": ("ms", 0, True), "jitter": ("ms", 0, False)},
    # Toxiproxy stalls a connection for good at rate 0; add_timeout is that fault, explicitly.
    "bandwidth": {"rate": ("KB/s", 1, True)},
    "slow_close": {"delay": ("ms", 0, True)},
    "timeout": {"timeout": ("ms", 0, True)},
    "reset_peer": {"timeout": ("ms", 0, False)},
    # Toxiproxy recurses without end on an average_size of 0.
    "slicer": {
        "average_size": ("bytes", 1, True),
        "size_variation": ("bytes", 0, False),
        "delay": ("µs", 0, False),
    },
    "limit_data": {"bytes": ("bytes", 0, True)},
}


def toxic_name(toxic_type: str, stream: str) -> str:
    """The name lkchaos gives its toxic of this type on this stream."""
    return f"{PREFIX}{toxic_type}_{stream}"


class ToxiproxyRefused(StackError):
    """Toxiproxy answered an API call with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        super().__init__(f"Toxiproxy refused {method} {path}: {status} {body}")


class UnknownProxy(StackError):
    """The proxy named does not exist on this Toxiproxy server."""

    def __init__(self, name: str, known: list[str], base_url: str) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"Toxiproxy at {base_url} has no proxy named {name!r}; its proxies are: "
            f"{', '.join(known) or '(none)'}. Use one of these names."
        )


@dataclass(frozen=True)
class Sample:
    """One timed GET through a proxy's listener: a status and its time, or an error."""

    ms: float
    status: int | None = None
    error: str | None = None


def _seg(name: str) -> str:
    """A proxy or toxic name as one URL path segment."""
    return quote(name, safe="")


class ToxiproxyClient:
    """Client bound to one Toxiproxy server, e.g. ``http://127.0.0.1:28474``.

    ``transport`` replaces httpx's network transport (``httpx.MockTransport`` in tests); it
    serves both the API calls and :meth:`timed_gets`.
    """

    def __init__(
        self,
        base_url: str,
        timeout: httpx.Timeout = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._transport = transport
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise StackError(
                f"Toxiproxy at {self.base_url} did not answer {method} {path} ({exc}); is it "
                "running and is toxiproxy_url right?"
            ) from exc
        if response.status_code >= 400:
            raise ToxiproxyRefused(method, path, response.status_code, response.text.strip())
        return response.json() if response.content else None

    def version(self) -> str:
        try:
            return self._http.get("/version").text.strip()
        except httpx.HTTPError as exc:
            raise StackError(f"Toxiproxy at {self.base_url} did not answer ({exc})") from exc

    def proxies(self, require: str | None = None) -> dict[str, dict[str, Any]]:
        """Every proxy by name; with ``require``, :class:`UnknownProxy` unless it is one."""
        result: dict[str, dict[str, Any]] = self._request("GET", "/proxies")
        if require is not None and require not in result:
            raise UnknownProxy(require, sorted(result), self.base_url)
        return result

    def proxy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/proxies/{_seg(name)}")
        return result

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/proxies/{_seg(name)}", {"enabled": enabled}
        )
        return result

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", f"/proxies/{_seg(proxy)}/toxics")
        return result

    def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/proxies/{_seg(proxy)}/toxics", toxic)
        return result

    def update_toxic(
        self, proxy: str, toxic: str, attributes: dict[str, Any], toxicity: float
    ) -> dict[str, Any]:
        """Change an existing toxic's attributes and toxicity (not its type or stream)."""
        result: dict[str, Any] = self._request(
            "POST",
            f"/proxies/{_seg(proxy)}/toxics/{_seg(toxic)}",
            {"attributes": attributes, "toxicity": toxicity},
        )
        return result

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._request("DELETE", f"/proxies/{_seg(proxy)}/toxics/{_seg(toxic)}")

    def remove_toxic_if_present(self, proxy: str, toxic: str) -> bool:
        """Remove a toxic; False (no error) when it was already gone."""
        try:
            self.remove_toxic(proxy, toxic)
        except ToxiproxyRefused as exc:
            if exc.status == 404 and "toxic" in exc.body.lower():
                return False
            raise
        return True

    def populate(self, proxies: list[dict[str, Any]]) -> None:
        """Create the proxies that do not exist and recreate those whose addresses differ
        (Toxiproxy's ``/populate``; one left as it is keeps its toxics and enabled state)."""
        self._request("POST", "/populate", proxies)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._request("POST", "/reset")

    def timed_gets(self, url: str, samples: int, timeout: float) -> list[Sample]:
        """``samples`` GETs of ``url``, each on a new connection, timed until the body is read.

        Not an API call: ``url`` is a proxy's listener, so the time includes every toxic on
        the link. A request that fails gives a :class:`Sample` with ``error`` set.
        """
        results: list[Sample] = []
        limits = httpx.Limits(max_keepalive_connections=0)
        http = httpx.Client(
            timeout=httpx.Timeout(timeout), limits=limits, transport=self._transport
        )
        try:
            for _ in range(samples):
                start = time.perf_counter()
                try:
                    response = http.get(url, headers={"Connection": "close"})
                except httpx.HTTPError as exc:
                    ms = (time.perf_counter() - start) * 1000
                    results.append(Sample(ms, error=f"{type(exc).__name__}: {exc}"))
                    continue
                ms = (time.perf_counter() - start) * 1000
                results.append(Sample(ms, status=response.status_code))
        finally:
            if self._transport is None:  # an injected transport belongs to the caller
                http.close()
        return results


def connect(settings: Settings) -> ToxiproxyClient:
    """The client for the deployment's Toxiproxy (``toxiproxy_url``); a ConfigError when the
    deployment has none (a target without a ``toxiproxy`` section)."""
    if not settings.toxiproxy_url:
        raise ConfigError(
            "this activity needs Toxiproxy and the target has none (toxiproxy_url is empty): "
            "add a `toxiproxy:` section to the target file or set LKCHAOS_TOXIPROXY_URL "
            "(`lkchaos target check` lists what can run on this target)"
        )
    return ToxiproxyClient(settings.toxiproxy_url)
