"""Probes on Toxiproxy: which faults are in place, and a link's latency end to end.

``proxies_state`` returns::

    {"clean": true, "disabled": [], "toxics": 0, "lkchaos_toxics": 0,
     "proxies": {"agent_livekit": {"enabled": true, "listen": "[::]:17880",
                                   "upstream": "livekit-1:7880", "toxics": []}, ...}}

``clean`` is true when no proxy is disabled and no toxic exists: a steady-state check that an
earlier run left nothing behind::

    {"type": "probe", "name": "no-fault-left-in-toxiproxy",
     "tolerance": {"type": "jsonpath", "path": "$.clean", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.toxiproxy.probes",
                  "func": "proxies_state"}}

``link_latency`` times HTTP GETs sent through a proxy's listener, each on a new connection, and
returns ``{"ok", "proxy", "enabled", "url", "samples", "answered", "failed", "min_ms",
"median_ms", "max_ms", "mean_ms", "samples_ms", "statuses", "errors", "max_median_ms"}``. A
link that does not answer is not an error of the probe: ``ok`` is false, ``failed`` counts the
requests and ``errors`` says why, so that a tolerance decides::

    {"type": "probe", "name": "livekit-link-under-300-ms",
     "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.toxiproxy.probes",
                  "func": "link_latency",
                  "arguments": {"proxy": "agent_livekit", "samples": 5,
                                "max_median_ms": 300}}}
"""

import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import LkChaosError
from lkchaos.settings import LOCAL, AddressError, Settings, split_host_port
from lkchaos.toxiproxy import client as toxiproxy
from lkchaos.toxiproxy.client import PREFIX
from lkchaos.values import check_address

__all__ = ["proxies_state", "link_latency"]

#: The most samples one link_latency call sends.
MAX_SAMPLES = 1000


@contextmanager
def _connected(
    what: str, configuration: Configuration, secrets: Secrets
) -> Iterator[toxiproxy.ToxiproxyClient]:
    try:
        with toxiproxy.connect(Settings.load(configuration, secrets)) as toxi:
            yield toxi
    except LkChaosError as exc:
        raise ActivityFailed(f"{what} failed: {exc}") from exc


def proxies_state(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Every proxy, whether it is enabled, and its toxics; ``clean`` when there is no fault.

    Returns ``{"clean", "disabled": [proxies], "toxics": n, "lkchaos_toxics": n, "proxies":
    {name: {"enabled", "listen", "upstream", "toxics": [{"name", "type", "stream",
    "toxicity", "attributes"}]}}}``; ``lkchaos_toxics`` counts the toxics named ``lkchaos_...``.
    """
    with _connected("reading Toxiproxy's proxies", configuration, secrets) as toxi:
        found = toxi.proxies()
    proxies: Dict[str, Dict[str, Any]] = {}
    for name in sorted(found):
        proxy = found[name]
        proxies[name] = {
            "enabled": bool(proxy.get("enabled", True)),
            "listen": proxy.get("listen"),
            "upstream": proxy.get("upstream"),
            "toxics": [
                {key: toxic.get(key) for key in ("name", "type", "stream", "toxicity",
                                                 "attributes")}
                for toxic in proxy.get("toxics") or []
            ],
        }  # fmt: skip
    disabled = [name for name, proxy in proxies.items() if not proxy["enabled"]]
    names = [str(t["name"]) for proxy in proxies.values() for t in proxy["toxics"]]
    return {
        "clean": not disabled and not names,
        "disabled": disabled,
        "toxics": len(names),
        "lkchaos_toxics": sum(name.startswith(PREFIX) for name in names),
        "proxies": proxies,
    }


def listener_address(listen: str) -> str:
    """Where a proxy listening on ``listen`` (``[::]:17880``) answers from here: its port on
    127.0.0.1, as the reference stack publishes it."""
    try:
        _, port = split_host_port(listen, None)
    except AddressError as exc:
        raise ActivityFailed(
            f"cannot tell the port of the listener {listen!r} ({exc}); pass address (host:port)"
        ) from exc
    return f"{LOCAL}:{port}"


def _check_latency_args(
    proxy: Any, samples: Any, path: Any, address: Any, timeout: Any, max_median_ms: Any
) -> None:
    if not isinstance(proxy, str) or not proxy:
        raise ActivityFailed(f"proxy must be the name of a Toxiproxy proxy, not {proxy!r}")
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise ActivityFailed(f"samples must be a whole number, not {samples!r}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise ActivityFailed(f"samples must be from 1 to {MAX_SAMPLES}, not {samples}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ActivityFailed(f"path must start with '/', not {path!r}")
    if address is not None:
        check_address("address", address)
    for label, value in (("timeout", timeout), ("max_median_ms", max_median_ms)):
        if label == "max_median_ms" and value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= 0:
            raise ActivityFailed(f"{label} must be a positive number, not {value!r}")


def link_latency(
    proxy: str,
    samples: int = 5,
    path: str = "/",
    address: str = None,  # type: ignore[assignment]
    timeout: float = 5.0,
    max_median_ms: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Time ``samples`` HTTP GETs of ``path`` through the proxy's listener, end to end.

    Each GET opens a new connection and is timed until its whole answer is read, so every toxic
    on the link counts (Toxiproxy delays no TCP handshake). The listener is the proxy's
    ``listen`` port on 127.0.0.1 (the reference stack's published ports); ``address``
    (host:port) overrides it. ``timeout`` (s) bounds each GET. Any HTTP answer counts as
    answered, whatever its status (see ``statuses``). ``ok`` is true when every GET was
    answered and, with ``max_median_ms``, the median is within it.

    Returns ``{"ok", "proxy", "enabled", "url", "samples", "answered", "failed", "min_ms",
    "median_ms", "max_ms", "mean_ms", "samples_ms", "statuses": {status: n}, "errors":
    [distinct messages], "max_median_ms"}``; the times are null when nothing answered.
    """
    _check_latency_args(proxy, samples, path, address, timeout, max_median_ms)
    proxy = Settings.load(configuration, secrets).toxiproxy_links.get(proxy, proxy)
    with _connected(f"timing the link {proxy}", configuration, secrets) as toxi:
        info = toxi.proxies(require=proxy)[proxy]
        url = f"http://{address or listener_address(str(info.get('listen', '')))}{path}"
        results = toxi.timed_gets(url, samples, float(timeout))
    times: List[float] = [round(s.ms, 3) for s in results if s.error is None]
    statuses: Dict[str, int] = {}
    for sample in results:
        if sample.status is not None:
            statuses[str(sample.status)] = statuses.get(str(sample.status), 0) + 1
    median = round(statistics.median(times), 3) if times else None
    within = max_median_ms is None or (median is not None and median <= max_median_ms)
    return {
        "ok": len(times) == samples and within,
        "proxy": proxy,
        "enabled": bool(info.get("enabled", True)),
        "url": url,
        "samples": samples,
        "answered": len(times),
        "failed": samples - len(times),
        "min_ms": min(times) if times else None,
        "median_ms": median,
        "max_ms": max(times) if times else None,
        "mean_ms": round(statistics.fmean(times), 3) if times else None,
        "samples_ms": times,
        "statuses": statuses,
        "errors": sorted({s.error for s in results if s.error is not None}),
        "max_median_ms": max_median_ms,
    }
