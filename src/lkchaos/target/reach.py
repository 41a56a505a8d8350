"""Reach what a target names: each check is one line of ``lkchaos target check``.

- each LiveKit node: an HTTP GET of its URL (any answer below 500 counts);
- Redis (each Sentinel, or the primary and replicas): a TCP connect; the TLS proxy: a TLS
  handshake for its first name (the certificate is not judged: the TLS probes do that);
  the resolver: a DNS query over UDP for that name, as a run asks (any answer counts, an
  NXDOMAIN too); Toxiproxy's API (``GET /version``), the voice prober when the target names
  one (``GET /health``), Prometheus and Alertmanager (``GET /-/ready``): an HTTP answer
  below 500, since a paused service still accepts connections (the kernel does);
- each at the address a run would use: the target file's, or where an environment variable
  overrides it (``LKCHAOS_LIVEKIT_NODE_URLS``, ``LKCHAOS_SENTINELS``, ...), that value, the
  variable named in the line;
- the runtime: the Docker engine's list of containers must hold every runtime name the roles
  map to (compose service names, container names, or label values);
- each secret reference must resolve (its value is never shown);
- each node must accept the API key pair: a signed ``ListRooms`` (read only), where a 401
  says the key or secret is not one of LiveKit's ``keys:``;
- each Toxiproxy link the target maps must name a proxy Toxiproxy has (``GET /proxies``);
- each Sentinel that accepts connections must answer, and monitor the master the target
  names (``SENTINEL MASTER``, read only): a name it does not know is listed with the ones it
  does; one that accepts and never answers (paused, hung) fails;
- each CA file the target names must load as PEM (``tls_proxy.ca_file``, Redis's
  ``tls.ca_file``).

Every network call has a timeout of :data:`TIMEOUT_S` seconds.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from lkchaos.settings import AddressError, join_host_port, split_host_port
from lkchaos.target import secrets
from lkchaos.target.load import LoadedTarget
from lkchaos.target.model import Target

TIMEOUT_S = 3.0
#: Engine API version named up front, so that the SDK does not connect before the listing
#: (Debian's engine 20.10 speaks up to 1.41; newer engines accept it).
DOCKER_API_VERSION = "1.41"


@dataclass(frozen=True)
class Reached:
    """One check: the ``component`` it belongs to (``livekit``, ``redis``, ``tls_proxy``,
    ``resolver``, ``toxiproxy``, ``docker``, ``secrets``), what was tried, whether it worked,
    and the answer or the error."""

    component: str
    what: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<5} {self.what}: {self.detail}"


def http_get(component: str, what: str, url: str, timeout: float | None = None) -> Reached:
    """GET ``url``; ok on any HTTP answer with a status below 500. ``timeout``: seconds,
    :data:`TIMEOUT_S` when None (as for each check below)."""
    timeout = TIMEOUT_S if timeout is None else timeout
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Reached(component, what, False, f"{url} did not answer ({exc or type(exc)})")
    return Reached(component, what, response.status_code < 500,
                   f"{url} answered HTTP {response.status_code}")


def tcp(component: str, what: str, address: str, timeout: float | None = None) -> Reached:
    """A TCP connect to ``host:port``."""
    timeout = TIMEOUT_S if timeout is None else timeout
    try:
        host, port = split_host_port(address, None)
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except (OSError, AddressError) as exc:
        return Reached(component, what, False, f"cannot connect to {address} ({exc})")
    return Reached(component, what, True, f"{address} accepts connections")


def tls_handshake(component: str, what: str, address: str, server_name: str,
                  timeout: float | None = None) -> Reached:
    """A TLS handshake with ``host:port`` for ``server_name`` (SNI) within ``timeout``
    seconds (:func:`lkchaos.tls.client.handshake`); the certificate is not verified. A proxy
    that accepts the connection and never completes the handshake (paused, hung) fails, as
    does one that does not speak TLS."""
    from lkchaos.tls import client

    timeout = TIMEOUT_S if timeout is None else timeout
    try:
        seen = client.handshake(address, server_name, timeout=timeout)
    except AddressError as exc:
        return Reached(component, what, False, f"cannot connect to {address} ({exc})")
    if seen.ok:
        return Reached(component, what, True,
                       f"{address} completed a TLS handshake for {server_name} ({seen.version})")
    if seen.outcome == "unreachable":
        return Reached(component, what, False, str(seen.error))
    if seen.outcome == "timeout":
        return Reached(component, what, False, (
            f"{address} accepts connections but completed no TLS handshake for {server_name} "
            f"within {timeout:g} s: paused or hung (a `pause_service` left in place? "
            "`lkchaos recover` undoes lkchaos's own)"))
    return Reached(component, what, False, (
        f"{address} accepts connections but no TLS handshake for {server_name} completed "
        f"({seen.error}): is this the proxy's TLS port, and does it serve {server_name}?"))


def dns_query(component: str, what: str, address: str, name: str,
              timeout: float | None = None) -> Reached:
    """A DNS query for ``name``'s A record to the resolver at ``host:port``, over UDP as a
    run asks; any answer counts (NXDOMAIN, REFUSED: the resolver answered)."""
    from lkchaos.dns import client

    timeout = TIMEOUT_S if timeout is None else timeout
    answer = client.lookup(name, address, timeout=timeout)
    if answer.rcode == "TIMEOUT":
        return Reached(component, what, False, (
            f"{address} gave no DNS answer over UDP for {name} within {timeout:g} s: down, "
            "paused or hung, or not a resolver (`lkchaos recover` undoes lkchaos's own "
            "faults)"))
    if answer.rcode == "UNREACHABLE":
        return Reached(component, what, False, (
            f"{address} cannot be asked for {name}: its host name does not resolve here, or "
            "there is no route to it"))
    if answer.rcode == "ERROR":
        return Reached(component, what, False, (
            f"{address} answered the query for {name} with something that is not DNS: is it "
            "the resolver's port?"))
    return Reached(component, what, True,
                   f"{address} answered {answer.rcode} for {name} "
                   f"({answer.latency_ms:.1f} ms)")


def _url_address(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return join_host_port(parts.hostname or "", port)


def _from_env(key: str) -> str | None:
    """The environment variable that overrides the target's ``key`` (a run uses its value),
    when it is set."""
    from lkchaos.settings import ENV_KEYS

    name = ENV_KEYS.get(key)
    return name if name and os.environ.get(name) else None


def _effective() -> Any | None:
    """The settings a run would use (the target file under the environment's overrides), or
    None when they cannot be built (then the file's values are checked)."""
    from lkchaos.settings import Settings

    try:
        return Settings.load()
    except Exception:  # the target's own problems are reported by its other lines
        return None


def _network(target: Target, effective: Any = None) -> list[Reached]:
    """The components the target names, each at the address a run would use: the target
    file's, or the value of the environment variable that overrides it (named in the line)."""

    def overridden(key: str) -> str | None:
        return _from_env(key) if effective is not None else None

    if env := overridden("livekit_node_urls"):
        found = [http_get("livekit", f"livekit node {url} (from {env})", url)
                 for url in effective.livekit_node_urls]  # fmt: skip
    else:
        found = [http_get("livekit", f"livekit node {node.name}", node.url)
                 for node in target.livekit.nodes]  # fmt: skip
    if env := overridden("sentinel_addresses"):
        found += [tcp("redis", f"redis sentinel (from {env})", address)
                  for address in effective.sentinel_addresses]  # fmt: skip
    elif target.redis.sentinel is not None:
        found += [tcp("redis", "redis sentinel", address)
                  for address in target.redis.sentinel.addresses]
    if target.redis.direct is not None:
        found.append(tcp("redis", "redis primary", target.redis.direct.primary))
        found += [tcp("redis", "redis replica", address)
                  for address in target.redis.direct.replicas]
    name = target.tls_proxy.names[0]
    if env := overridden("tls_address"):
        found.append(tls_handshake("tls_proxy", f"tls proxy (from {env})",
                                   effective.tls_address, name))
    else:
        found.append(tls_handshake("tls_proxy", f"tls proxy ({target.tls_proxy.kind})",
                                   target.tls_proxy.address, name))
    if env := overridden("dns_server"):
        found.append(dns_query("resolver", f"resolver (from {env})", effective.dns_server,
                               name))
    elif target.resolver is not None:
        found.append(dns_query("resolver", "resolver", target.resolver.address, name))
    # Toxiproxy's API asked (GET /version), not only connected to: a paused Toxiproxy still
    # accepts connections (the kernel does), and answers nothing.
    if env := overridden("toxiproxy_url"):
        found.append(http_get("toxiproxy", f"toxiproxy API (from {env})",
                              effective.toxiproxy_url.rstrip("/") + "/version"))
    elif target.toxiproxy is not None:
        found.append(http_get("toxiproxy", "toxiproxy API",
                              target.toxiproxy.api_url.rstrip("/") + "/version"))
    found += _services(target, effective)
    return found


def _services(target: Target, effective: Any | None) -> list[Reached]:
    """The voice prober (when not run in process) and the monitoring URLs the target names,
    each asked for its health (a URL that answers below 500 is reachable)."""
    urls = {
        ("voice", "voice prober", "voice_prober_url", "/health"):
            target.voice.prober_url if target.voice else "",
        ("prometheus", "prometheus", "prometheus_url", "/-/ready"):
            target.monitoring.prometheus_url if target.monitoring else "",
        ("alertmanager", "alertmanager", "alertmanager_url", "/-/ready"):
            target.monitoring.alertmanager_url if target.monitoring else "",
    }  # fmt: skip
    from lkchaos.settings import ENV_KEYS

    found = []
    for (component, what, key, path), url in urls.items():
        if effective is not None and ENV_KEYS[key] in os.environ:  # "" too: none here
            url, what = str(getattr(effective, key)), f"{what} (from {ENV_KEYS[key]})"
        if url:
            found.append(http_get(component, what, url.rstrip("/") + path))
    return found


def _names(target: Target, containers: list[Any]) -> set[str]:
    runtime = target.runtime
    if runtime.compose is not None:
        return {str(c.labels.get("com.docker.compose.service")) for c in containers
                if c.labels.get("com.docker.compose.project") == runtime.compose.project}
    assert runtime.docker is not None
    if runtime.docker.by == "label":
        key = runtime.docker.label or ""
        return {str(c.labels[key]) for c in containers if key in c.labels}
    return {str(c.name) for c in containers}


def runtime_checks(target: Target) -> list[Reached]:
    """One check per mapped runtime name, or one failure when the engine cannot be reached.
    The engine is found as the Docker CLI finds it (``DOCKER_HOST`` or the local socket)."""
    import docker
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    where = target.runtime.describe()
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return [Reached("docker", "docker engine", False,
                        f"the Docker engine is not reachable: no socket at {host}; start the "
                        "engine or set DOCKER_HOST to it")]  # fmt: skip
    try:
        client = docker.from_env(version=DOCKER_API_VERSION, timeout=int(TIMEOUT_S))
        try:
            containers = client.containers.list(all=True)
        finally:
            client.close()
    except (DockerException, RequestException, OSError) as exc:
        return [Reached("docker", "docker engine", False,
                        f"the Docker engine is not reachable: {exc}")]
    present = _names(target, containers)
    found = [Reached("docker", "docker engine", True, f"{len(containers)} containers listed")]
    for role, names in sorted(target.role_names().items()):
        for name in names:
            ok = name in present
            found.append(Reached("docker", f"role {role}", ok,
                                 f"{name!r} found in {where}" if ok else
                                 f"no {name!r} in {where}: start it, or correct roles.{role}"))
    return found


def secret_checks(loaded: LoadedTarget) -> list[Reached]:
    """One check per secret reference: it resolves (never showing its value) or why not."""
    found = []
    for key, ref in loaded.target.secret_refs().items():
        try:
            secrets.resolve(ref, loaded.folder)
        except secrets.SecretUnavailable as exc:
            found.append(Reached("secrets", f"secret {key}", False, str(exc)))
        else:
            found.append(Reached("secrets", f"secret {key}", True,
                                 f"{ref.describe()} resolves ({secrets.MASK})"))
    return found


def credential_checks(loaded: LoadedTarget) -> list[Reached]:
    """Per node, whether it accepts the target's API key pair: a ``ListRooms`` signed with
    it (a token with the ``roomList`` grant, 60 s). A node that gives no answer, or a pair
    that does not resolve, is left to the network and secret lines."""
    import datetime as dt

    from livekit import api

    from lkchaos.livekit.client import http_url

    livekit = loaded.target.livekit
    try:
        key = secrets.resolve(livekit.api_key, loaded.folder)
        secret = secrets.resolve(livekit.api_secret, loaded.folder)
    except secrets.SecretUnavailable:
        return []
    with warnings.catch_warnings():  # a short secret is reported by the node's answer
        warnings.simplefilter("ignore")
        token = (api.AccessToken(key, secret).with_identity("lkchaos-target-check")
                 .with_ttl(dt.timedelta(seconds=60))
                 .with_grants(api.VideoGrants(room_list=True)).to_jwt())  # fmt: skip
    found = []
    for node in livekit.nodes:
        endpoint = http_url(node.url).rstrip("/") + "/twirp/livekit.RoomService/ListRooms"
        try:
            answer = httpx.post(endpoint, json={}, timeout=TIMEOUT_S,
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        except httpx.HTTPError:
            continue
        what = f"livekit node {node.name} API key"
        if answer.status_code == 200:
            rooms = len(answer.json().get("rooms") or [])
            found.append(Reached("livekit", what, True,
                                 f"accepted (ListRooms: {rooms} rooms)"))
        elif answer.status_code in (401, 403):
            found.append(Reached("livekit", what, False, (
                f"refused (HTTP {answer.status_code}: {answer.text.strip()[:160]}): "
                "livekit.api_key and api_secret must be a pair from LiveKit's `keys:` "
                "(LIVEKIT_KEYS); correct the reference that resolves to the wrong one")))
        else:
            found.append(Reached("livekit", what, False, (
                f"ListRooms answered HTTP {answer.status_code} "
                f"({answer.text.strip()[:160]}): is {node.url} a LiveKit node's API?")))
    return found


def file_checks(loaded: LoadedTarget) -> list[Reached]:
    """Each CA file the target names loads as PEM certificates (a failure counts against
    the component that uses it: ``tls_proxy`` or ``redis``)."""
    import ssl

    named = {"tls_proxy.ca_file": ("tls_proxy", loaded.target.tls_proxy.ca_file)}
    for mode in ("sentinel", "direct"):
        found = getattr(loaded.target.redis, mode)
        tls = getattr(found, "tls", None)
        if tls is not None:
            named[f"redis.{mode}.tls.ca_file"] = ("redis", tls.ca_file)
    checks = []
    for key, (component, text) in named.items():
        if not text:
            continue
        path = secrets.expand_path(text, loaded.folder)
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(path))
        except FileNotFoundError:
            checks.append(Reached(component, key, False,
                                  f"no file {str(path)!r}: correct {key}, or create it"))
        except (OSError, ssl.SSLError) as exc:
            checks.append(Reached(component, key, False,
                                  f"{str(path)!r} is not a PEM CA certificate ({exc})"))
        else:
            checks.append(Reached(component, key, True, f"{str(path)!r} loads"))
    return checks


def sentinel_checks(loaded: LoadedTarget) -> list[Reached]:
    """Per Sentinel, whether it monitors the master the target names (``SENTINEL MASTER``
    with the target's password and TLS): a name it does not know fails, listing the names it
    monitors. A Sentinel that gives no answer, or settings that do not resolve, are left to
    the network and secret lines."""

    from lkchaos.errors import LkChaosError
    from lkchaos.settings import Settings
    from lkchaos.target.convert import settings_values

    if loaded.target.redis.sentinel is None:
        return []
    try:  # the password resolved, as a run would (its value is never shown)
        settings = Settings(**settings_values(loaded, state=Path("/nonexistent")))
    except (LkChaosError, secrets.SecretUnavailable):
        return []
    return master_name_checks(settings)


def master_name_checks(settings: Any) -> list[Reached]:
    """:func:`sentinel_checks` for ``settings`` (:class:`lkchaos.settings.Settings`)."""
    import redis

    from lkchaos.redis import client

    access = client.Access.of(settings)
    name = settings.sentinel_master
    found = []
    for address in settings.sentinel_addresses:
        what = f"redis sentinel {address} master {name!r}"
        try:
            with client.sentinel(address, access, TIMEOUT_S) as sentinel:
                try:
                    info: Any = sentinel.sentinel_master(name)
                except redis.ResponseError as exc:
                    masters: Any = sentinel.sentinel_masters()
                    known = ", ".join(sorted(str(m) for m in masters)) or "none"
                    found.append(Reached("redis", what, False, (
                        f"not monitored ({exc}); this Sentinel monitors: {known}: set "
                        "redis.sentinel.master to the name in its `sentinel monitor` line")))
                    continue
        except client.RedisAuthError as exc:
            found.append(Reached("redis", what, False, str(exc)))
            continue
        except redis.TimeoutError:
            found.append(Reached("redis", what, False, (
                f"{address} accepts connections but gave no answer within {TIMEOUT_S:g} s: "
                "paused or hung (a `pause_service` left in place? `lkchaos recover` undoes "
                "lkchaos's own)")))
            continue
        except (redis.RedisError, OSError):
            continue
        found.append(Reached("redis", what, True,
                             f"monitored: {join_host_port(str(info['ip']), int(info['port']))}"))
    return found


def toxiproxy_checks(target: Target, timeout: float = TIMEOUT_S) -> list[Reached]:
    """Per link of ``toxiproxy.links``, whether Toxiproxy has the proxy it names (``GET
    /proxies``, read only): a ``toxiproxy`` line ``toxiproxy link <role>``. An API that
    gives no answer is left to the network line."""
    if target.toxiproxy is None or not target.toxiproxy.links:
        return []
    url = target.toxiproxy.api_url.rstrip("/") + "/proxies"
    try:
        answer = httpx.get(url, timeout=timeout)
        proxies: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return []
    if not isinstance(proxies, dict):
        return []
    listed = ", ".join(sorted(proxies)) or "none"
    found = []
    for link, proxy in sorted(target.toxiproxy.links.items()):
        what = f"toxiproxy link {link}"
        if proxy in proxies:
            found.append(Reached("toxiproxy", what, True,
                                 f"proxy {proxy!r}: {proxies[proxy].get('listen')} -> "
                                 f"{proxies[proxy].get('upstream')}"))
        else:
            found.append(Reached("toxiproxy", what, False, (
                f"no proxy {proxy!r} in Toxiproxy at {target.toxiproxy.api_url} (it has: "
                f"{listed}): correct toxiproxy.links.{link}")))
    return found


def reach(loaded: LoadedTarget) -> list[Reached]:
    """Every check of the target, in order: secrets, files, network, API key, Sentinel's
    master, Toxiproxy's links, runtime."""
    return [*secret_checks(loaded), *file_checks(loaded),
            *_network(loaded.target, _effective()),
            *credential_checks(loaded), *sentinel_checks(loaded),
            *toxiproxy_checks(loaded.target), *runtime_checks(loaded.target)]
