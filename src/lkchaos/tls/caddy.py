"""Which certificate files Caddy serves for which name, and a reload through its admin API.

Caddy says which file serves which name in one of two forms:

- a Caddyfile: each site block with a ``tls <cert> <key>`` line (:func:`parse_caddyfile`);
- its JSON configuration (what the admin API's ``GET /config/`` returns, or a JSON config
  file): ``apps.tls.certificates.load_files`` entries with ``tags``, chosen for names by the
  HTTP servers' ``tls_connection_policies`` (``match.sni`` and
  ``certificate_selection.any_tag``), as the Caddyfile adapter writes them
  (:func:`config_files`).

:func:`admin_reload` is what ``caddy reload --force`` does: it posts the running
configuration back to ``/load`` with ``Cache-Control: must-revalidate``, so Caddy loads it
again, certificate files included, even though it did not change. Its listeners stay open.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from lkchaos.errors import StackError
from lkchaos.httpclient import shared_client

#: Seconds for each call to Caddy's admin API.
ADMIN_TIMEOUT_S = 10.0


def parse_caddyfile(text: str) -> dict[str, tuple[str, str]]:
    """The names of each site block with a ``tls <cert> <key>`` line: name -> (cert, key).

    Site addresses may carry a scheme or a port (``https://lk.chaos.test:443``); several
    addresses of one block share its files.
    """
    sites: dict[str, tuple[str, str]] = {}
    depth = 0
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0 and line.endswith("{"):
            addresses = line[:-1].replace(",", " ").split()
            current = [a.split("://")[-1].rsplit(":", 1)[0] for a in addresses]
        elif depth == 1 and line.startswith("tls "):
            args = line.split()
            if len(args) >= 3 and not args[1].startswith("{"):
                for name in current:
                    if name and not name.startswith(("(", ":")):
                        sites[name.lower()] = (args[1], args[2])
        depth += line.count("{") - line.count("}")
        if depth == 0:
            current = []
    return sites


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def config_files(config: Any) -> dict[str, tuple[str, str]]:
    """Name -> (cert, key) from Caddy's JSON configuration (see the module docstring)."""
    by_tag: dict[str, tuple[str, str]] = {}
    for entry in _dicts(_get(config, "apps", "tls", "certificates", "load_files")):
        cert, key = entry.get("certificate"), entry.get("key")
        if isinstance(cert, str) and isinstance(key, str):
            for tag in entry.get("tags") or []:
                by_tag.setdefault(str(tag), (cert, key))
    found: dict[str, tuple[str, str]] = {}
    servers = _get(config, "apps", "http", "servers")
    for server in servers.values() if isinstance(servers, dict) else []:
        for policy in _dicts(_get(server, "tls_connection_policies")):
            names = _get(policy, "match", "sni") or []
            tags = _get(policy, "certificate_selection", "any_tag") or []
            files = [by_tag[str(tag)] for tag in tags if str(tag) in by_tag]
            if len(files) == 1:
                for name in names:
                    if isinstance(name, str) and "*" not in name:
                        found.setdefault(name.lower(), files[0])
    return found


def read_config(text: str) -> dict[str, tuple[str, str]]:
    """Name -> (cert, key) from a configuration file: JSON when it is a JSON object, else a
    Caddyfile."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return config_files(json.loads(stripped))
        except json.JSONDecodeError:
            pass  # a Caddyfile whose first block is the global options block
    return parse_caddyfile(text)


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def admin_config(base: str, timeout: float = ADMIN_TIMEOUT_S) -> Any:
    """Caddy's running configuration from its admin API (``GET /config/``)."""
    try:
        response = shared_client().get(_url(base, "/config/"), timeout=timeout)
    except httpx.HTTPError as exc:
        raise StackError(f"Caddy's admin API at {base} does not answer ({exc}): check the "
                         "target's tls_proxy.reload.admin_api and that Caddy runs") from exc
    if response.status_code != 200:
        raise StackError(f"Caddy's admin API at {base} answered HTTP {response.status_code} "
                         f"to GET /config/: {response.text[:300]}")  # fmt: skip
    try:
        return response.json()
    except ValueError as exc:
        raise StackError(f"Caddy's admin API at {base} did not answer JSON to GET /config/: "
                         "is it Caddy's admin endpoint?") from exc


def admin_reload(base: str, timeout: float = ADMIN_TIMEOUT_S) -> None:
    """Load Caddy's running configuration again, certificates included (``POST /load``)."""
    config = admin_config(base, timeout)
    if not isinstance(config, dict) or not config:
        raise StackError(f"Caddy at {base} runs an empty configuration: there is nothing to "
                         "reload")  # fmt: skip
    try:
        response = shared_client().post(
            _url(base, "/load"), content=json.dumps(config).encode(), timeout=timeout,
            headers={"Content-Type": "application/json", "Cache-Control": "must-revalidate"},
        )
    except httpx.HTTPError as exc:
        raise StackError(f"POST /load to Caddy's admin API at {base} failed ({exc})") from exc
    if response.status_code != 200:
        raise StackError(f"Caddy's admin API at {base} refused the reload: HTTP "
                         f"{response.status_code}: {response.text[:300]}")  # fmt: skip
