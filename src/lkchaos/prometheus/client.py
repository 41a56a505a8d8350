"""HTTP clients of the monitoring backends: Prometheus's API (``/api/v1``), Alertmanager's
API v2, and a Pushgateway. One small class per backend; every request has an explicit
timeout, and every failure is a :class:`MonitoringError` that names the backend, its URL and,
when the backend answered, its own message.

Exception tree::

    LkChaosError
    └── MonitoringError           a backend refused a request, or answered what is not JSON
        └── MonitoringUnreachable the backend could not be reached within the timeout

The clients use the process's shared HTTP client (:func:`lkchaos.httpclient.shared_client`)
unless given one (tests pass a client with a mock transport).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from lkchaos.errors import LkChaosError
from lkchaos.httpclient import shared_client

#: Seconds a request to Prometheus or Alertmanager may take, unless the caller says.
TIMEOUT_S = 5.0


class MonitoringError(LkChaosError):
    """A monitoring backend refused a request or answered something unreadable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MonitoringUnreachable(MonitoringError):
    """The backend did not answer (refused connection, timeout, DNS failure)."""


class _Api:
    """One backend at ``base_url``: GETs that return JSON, with a timeout each."""

    name = "backend"

    def __init__(self, base_url: str, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http

    @property
    def http(self) -> httpx.Client:
        return self._http if self._http is not None else shared_client()

    def _request(self, method: str, path: str, timeout: httpx.Timeout | float,
                 **kwargs: Any) -> httpx.Response:  # fmt: skip
        url = f"{self.base_url}{path}"
        try:
            return self.http.request(method, url, timeout=timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise MonitoringUnreachable(
                f"{self.name} at {self.base_url} did not answer {method} {path} in time "
                f"({type(exc).__name__}): check that it runs and that its URL is right"
            ) from exc
        except httpx.HTTPError as exc:
            raise MonitoringUnreachable(
                f"{self.name} at {self.base_url} cannot be reached ({exc or type(exc).__name__})"
                ": check that it runs and that its URL is right"
            ) from exc

    def _json(self, path: str, params: Any = None, timeout: float = TIMEOUT_S) -> Any:
        response = self._request("GET", path, timeout, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or body is None:
            raise MonitoringError(
                f"{self.name} at {self.base_url} answered GET {path} with HTTP "
                f"{response.status_code}: {self._reason(body, response.text)}",
                response.status_code,
            )
        return body

    @staticmethod
    def _reason(body: Any, text: str) -> str:
        """The backend's own message: Prometheus's ``errorType: error``, else the body."""
        if isinstance(body, Mapping) and body.get("error"):
            kind = body.get("errorType")
            return f"{kind}: {body['error']}" if kind else str(body["error"])
        return text.strip()[:300] or "no readable body"


class Prometheus(_Api):
    """Prometheus's HTTP API (``/api/v1``)."""

    name = "Prometheus"

    def _data(self, path: str, params: Any = None, timeout: float = TIMEOUT_S) -> Any:
        body = self._json(path, params, timeout)
        if not isinstance(body, Mapping) or body.get("status") != "success":
            raise MonitoringError(f"Prometheus at {self.base_url} answered GET {path} with "
                                  f"an error: {self._reason(body, '')}")
        return body.get("data"), list(body.get("warnings") or [])

    def query(self, expr: str, timeout: float = TIMEOUT_S) -> tuple[dict[str, Any], list[str]]:
        """An instant query: ``({"resultType", "result"}, warnings)``. Prometheus evaluates
        for at most ``timeout`` seconds; the request waits one second more."""
        data, warnings = self._data("/api/v1/query", {"query": expr, "timeout": _duration(timeout)},
                                    timeout + 1.0)  # fmt: skip
        if not isinstance(data, Mapping) or "resultType" not in data:
            raise MonitoringError(f"Prometheus at {self.base_url} answered a query without a "
                                  "result: is this Prometheus's API?")  # fmt: skip
        return dict(data), warnings

    def alerts(self, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Every pending or firing alert (``/api/v1/alerts``)."""
        data, _ = self._data("/api/v1/alerts", timeout=timeout)
        return [dict(a) for a in (data or {}).get("alerts") or []]

    def alert_rules(self, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Every alerting rule of every group (``/api/v1/rules?type=alert``)."""
        data, _ = self._data("/api/v1/rules", {"type": "alert"}, timeout)
        return [dict(rule) for group in (data or {}).get("groups") or []
                for rule in group.get("rules") or [] if rule.get("type") == "alerting"]

    def targets(self, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Every active scrape target (``/api/v1/targets?state=active``)."""
        data, _ = self._data("/api/v1/targets", {"state": "active"}, timeout)
        return [dict(t) for t in (data or {}).get("activeTargets") or []]


class Alertmanager(_Api):
    """Alertmanager's API v2."""

    name = "Alertmanager"

    def alerts(self, matchers: Mapping[str, str] | None = None,
               timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:  # fmt: skip
        """The alerts Alertmanager holds (active, silenced and inhibited), filtered by label
        equality ``matchers``."""
        filters = [("filter", f'{key}="{_quoted(value)}"') for key, value in
                   sorted((matchers or {}).items())]  # fmt: skip
        body = self._json("/api/v2/alerts", filters, timeout)
        if not isinstance(body, list):
            raise MonitoringError(f"Alertmanager at {self.base_url} answered /api/v2/alerts "
                                  "with something other than a list: is this its API v2?")
        return [dict(a) for a in body]


def _duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (``2500ms``: it takes no fractional seconds)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _segment(key: str, value: str) -> str:
    """A grouping-key path segment; values base64-encoded, so any text (and "") is allowed."""
    encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
    return f"{key}@base64/{encoded}"


class Pushgateway(_Api):
    """A Pushgateway: one group of metrics per grouping key."""

    name = "Pushgateway"

    def group_path(self, job: str, grouping: Mapping[str, str]) -> str:
        parts = [f"/metrics/{_segment('job', job)}"]
        parts += [_segment(key, value) for key, value in grouping.items()]
        return "/".join(parts)

    def put(self, job: str, grouping: Mapping[str, str], text: str,
            timeout: httpx.Timeout | float = TIMEOUT_S) -> None:  # fmt: skip
        """Replace the group's metrics with ``text`` (the text exposition format)."""
        path = self.group_path(job, grouping)
        response = self._request("PUT", path, timeout, content=text.encode(),
                                 headers={"Content-Type": "text/plain; version=0.0.4"})
        if response.status_code >= 300:
            raise MonitoringError(
                f"Pushgateway at {self.base_url} refused PUT {path}: HTTP "
                f"{response.status_code}: {response.text.strip()[:300] or 'no body'}",
                response.status_code,
            )
