"""A thin, typed client for Toxiproxy's HTTP API with explicit timeouts.

All of lkchaos's Toxiproxy calls go through here. (The ``toxiproxy-python`` package keeps the
server address in process-global class attributes and sets no timeout on its requests.)
"""

from __future__ import annotations

from typing import Any

import httpx

from lkchaos.errors import StackError

TIMEOUT = httpx.Timeout(5.0)


class ToxiproxyClient:
    """Client bound to one Toxiproxy server, e.g. ``http://127.0.0.1:28474``."""

    def __init__(self, base_url: str, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

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
            raise StackError(
                f"Toxiproxy refused {method} {path}: {response.status_code} {response.text.strip()}"
            )
        return response.json() if response.content else None

    def version(self) -> str:
        try:
            return self._http.get("/version").text.strip()
        except httpx.HTTPError as exc:
            raise StackError(f"Toxiproxy at {self.base_url} did not answer ({exc})") from exc

    def proxies(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = self._request("GET", "/proxies")
        return result

    def proxy(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/proxies/{name}")
        return result

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/proxies/{name}", {"enabled": enabled})
        return result

    def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/proxies/{proxy}/toxics", toxic)
        return result

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self._request("DELETE", f"/proxies/{proxy}/toxics/{toxic}")

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._request("POST", "/reset")
