"""Faults on the deployment's links through Toxiproxy: toxics, and partitions (disabled proxies).

``proxy`` is a link role of the target (``agent_livekit``, ``agent_speech_to_text``,
``agent_tool_server``: the target's ``toxiproxy.links`` names the proxy) or a proxy's own
name. Every action checks all of its arguments, then that the proxy exists (the error lists the
proxies that do), before it changes anything, and returns what it did. A fault is written to
the fault ledger before it is injected, and its rollback removes the entry, so ``lkchaos
recover`` can undo it even when the runner died.

A toxic acts on one ``stream``: ``downstream`` (the default: what the upstream service sends
back) or ``upstream`` (what the client sends); a latency toxic on one stream adds its latency
once per request and answer. ``toxicity`` (0 to 1, default 1) is the share of connections it
affects. The toxics lkchaos adds are named ``lkchaos_<type>_<stream>``, e.g.
``lkchaos_latency_downstream``: one of each type and stream per proxy, so adding it again
replaces its attributes (``"replaced": true``). The add actions return ``{"proxy", "name",
"type", "stream", "toxicity", "attributes", "replaced"}``. A rollback removes exactly that
name with ``remove_toxic``, or every lkchaos toxic with ``remove_all_toxics(only_lkchaos=True)``;
removing what is already gone is not an error::

    {"type": "action", "name": "slow-livekit-link",
     "provider": {"type": "python", "module": "lkchaos.toxiproxy.actions",
                  "func": "add_latency",
                  "arguments": {"proxy": "agent_livekit", "latency_ms": 200}}}

    {"type": "action", "name": "heal-livekit-link",
     "provider": {"type": "python", "module": "lkchaos.toxiproxy.actions",
                  "func": "remove_toxic",
                  "arguments": {"proxy": "agent_livekit", "name": "lkchaos_latency_downstream"}}}

Every action returns once Toxiproxy lists its effect (the toxic with its attributes, the
toxic gone, the proxy enabled or disabled), and fails otherwise
(``lkchaos.verify.NotInEffect``).

Toxiproxy works on TCP only.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import LkChaosError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.toxiproxy import client as toxiproxy
from lkchaos.toxiproxy.client import PREFIX, STREAMS, TOXICS, toxic_name
from lkchaos.values import check_flag, check_text
from lkchaos.verify import until

__all__ = [
    "add_toxic", "add_latency", "add_bandwidth", "add_timeout", "add_reset_peer",
    "add_slow_close", "add_limit_data", "remove_toxic", "remove_all_toxics", "disable_proxy",
    "enable_proxy", "reset",
]  # fmt: skip

UNDO = "lkchaos.toxiproxy.actions"

def _link(proxy: str, configuration: Configuration, secrets: Secrets) -> str:
    """The proxy's name on the target: a link role (``agent_livekit``, ``agent_speech_to_text``,
    ``agent_tool_server``) is mapped through the target's ``toxiproxy.links``; any other name
    is a proxy's own name."""
    try:
        links = Settings.load(configuration, secrets).toxiproxy_links
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    return links.get(proxy, proxy)


def _check_proxy_name(proxy: Any) -> str:
    if not isinstance(proxy, str) or not proxy:
        raise ActivityFailed(f"proxy must be the name of a Toxiproxy proxy, not {proxy!r}")
    return check_text("proxy", proxy)


def _check_toxic_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ActivityFailed(f"name must be the name of a toxic, not {name!r}")
    return check_text("name", name)


#: The largest value of an attribute, by its unit: an hour for a delay (a longer one is a
#: connection held for good: add_timeout is that fault), and what Toxiproxy's integers and a
#: JSON number hold exactly for the others.
MAXIMUM = {"ms": 3_600_000, "µs": 3_600_000_000, "KB/s": 2**53, "bytes": 2**53}


def _whole(label: str, value: Any, unit: str, minimum: int) -> int:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value != int(value):
        raise ActivityFailed(f"{label} must be a whole number of {unit}, not {value!r}")
    if value < minimum:
        what = "must not be negative" if minimum == 0 else f"must be at least {minimum} {unit}"
        raise ActivityFailed(f"{label} {what}, not {value!r}")
    highest = MAXIMUM.get(unit)
    if highest is not None and value > highest:
        hint = (" (an hour; to hold connections for good, use add_timeout)"
                if unit in ("ms", "µs") else "")  # fmt: skip
        raise ActivityFailed(f"{label} must be at most {highest} {unit}{hint}, not {value!r}")
    return int(value)


def _check_toxic(
    proxy: Any, toxic_type: Any, attributes: Any, stream: Any, toxicity: Any,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The toxic to create, or ActivityFailed naming the first bad argument."""
    _check_proxy_name(proxy)
    schema = TOXICS.get(toxic_type) if isinstance(toxic_type, str) else None
    if schema is None:
        raise ActivityFailed(
            f"unknown toxic type {toxic_type!r}; use one of: {', '.join(sorted(TOXICS))}"
        )
    if stream not in STREAMS:
        raise ActivityFailed(f"stream must be 'upstream' or 'downstream', not {stream!r}")
    number = isinstance(toxicity, int | float) and not isinstance(toxicity, bool)
    if not number or not 0.0 <= toxicity <= 1.0:
        raise ActivityFailed(
            f"toxicity must be a number from 0 to 1 (the share of connections affected), "
            f"not {toxicity!r}"
        )
    if not isinstance(attributes, dict):
        raise ActivityFailed(f"attributes must be a mapping, not {attributes!r}")
    labels = labels or {key: f"attributes.{key}" for key in schema}
    unknown = sorted(set(attributes) - set(schema))
    if unknown:
        raise ActivityFailed(
            f"the {toxic_type} toxic has no attribute {', '.join(map(repr, unknown))}; its "
            f"attributes are: {', '.join(schema)}"
        )
    checked: dict[str, int] = {}
    for key, (unit, minimum, required) in schema.items():
        if key not in attributes:
            if required:
                raise ActivityFailed(f"the {toxic_type} toxic needs {labels[key]} ({unit})")
            continue
        checked[key] = _whole(labels[key], attributes[key], unit, minimum)
    if toxic_type == "slicer" and checked.get("size_variation", 0) >= checked["average_size"]:
        raise ActivityFailed(
            f"{labels['size_variation']} must be less than {labels['average_size']}"
        )
    return {
        "name": toxic_name(toxic_type, stream),
        "type": toxic_type,
        "stream": stream,
        "toxicity": float(toxicity),
        "attributes": checked,
    }


@contextmanager
def _connected(
    what: str, configuration: Configuration, secrets: Secrets
) -> Iterator[tuple[toxiproxy.ToxiproxyClient, str]]:
    """The Toxiproxy client and the fault ledger's folder; failures become ActivityFailed."""
    try:
        settings = Settings.load(configuration, secrets)
        with toxiproxy.connect(settings) as toxi:
            yield toxi, settings.state_dir
    except (LkChaosError, OSError) as exc:
        raise ActivityFailed(f"{what} failed: {exc}") from exc


def _toxic_listed(
    toxi: toxiproxy.ToxiproxyClient, proxy: str, name: str
) -> Dict[str, Any] | None:
    found = toxi.proxies(require=proxy)[proxy].get("toxics") or []
    return next((t for t in found if t.get("name") == name), None)


def _verify_toxic(toxi: toxiproxy.ToxiproxyClient, proxy: str, toxic: Dict[str, Any]) -> None:
    """Until Toxiproxy lists the toxic with the attributes, stream and toxicity asked for."""
    def matches(seen: Dict[str, Any] | None) -> bool:
        if seen is None or seen.get("type") != toxic["type"]:
            return False
        attrs = seen.get("attributes") or {}
        return (seen.get("stream") == toxic["stream"]
                and math.isclose(float(seen.get("toxicity", -1)), toxic["toxicity"])
                and all(attrs.get(k) == v for k, v in toxic["attributes"].items()))

    until(lambda: _toxic_listed(toxi, proxy, toxic["name"]), matches,
          f"toxic {toxic['name']} on proxy {proxy}",
          describe=lambda seen: "not listed" if seen is None else repr(seen))


def _verify_gone(toxi: toxiproxy.ToxiproxyClient, proxy: str, name: str) -> None:
    until(lambda: _toxic_listed(toxi, proxy, name), lambda seen: seen is None,
          f"removal of toxic {name} from proxy {proxy}")


def _fault(kind: str, target: str, undo: str, **arguments: Any) -> ledger.Fault:
    return ledger.Fault(kind, target, UNDO, undo, arguments)


def _add(
    proxy: str, toxic_type: str, attributes: Dict[str, Any], stream: str, toxicity: float,
    configuration: Configuration, secrets: Secrets, labels: dict[str, str] | None = None,
) -> Dict[str, Any]:  # fmt: skip
    toxic = _check_toxic(proxy, toxic_type, attributes, stream, toxicity, labels)
    proxy = _link(proxy, configuration, secrets)
    name, target = toxic["name"], f"{proxy}/{toxic['name']}"
    with _connected(f"adding toxic {name} to proxy {proxy}", configuration, secrets) as (toxi, st):
        current = toxi.proxies(require=proxy)[proxy].get("toxics") or []
        existing = next((t for t in current if t.get("name") == name), None)
        if existing is not None and existing.get("type") != toxic_type:
            raise ActivityFailed(
                f"proxy {proxy} already has a toxic named {name} of type "
                f"{existing.get('type')!r}; remove it first with remove_toxic"
            )
        ledger.forget(st, "toxic", target)  # one entry, even when replacing
        ledger.record(st, _fault("toxic", target, "remove_toxic", proxy=proxy, name=name))
        try:
            if existing is None:
                toxi.add_toxic(proxy, toxic)
            else:
                toxi.update_toxic(proxy, name, toxic["attributes"], toxic["toxicity"])
        except toxiproxy.ToxiproxyRefused as exc:
            if exc.status != 409:  # 409: added meanwhile by someone else; take it over
                raise
            existing = toxic
            toxi.update_toxic(proxy, name, toxic["attributes"], toxic["toxicity"])
        _verify_toxic(toxi, proxy, toxic)
    return {"proxy": proxy, **toxic, "replaced": existing is not None}


def add_toxic(
    proxy: str,
    toxic_type: str,
    attributes: Dict[str, Any],
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Add any Toxiproxy toxic (or replace lkchaos's toxic of that type and stream).

    ``toxic_type`` and its ``attributes`` (whole numbers): ``latency`` {latency, jitter} ms;
    ``bandwidth`` {rate} KB/s; ``slow_close`` {delay} ms; ``timeout`` {timeout} ms;
    ``reset_peer`` {timeout} ms; ``slicer`` {average_size, size_variation} bytes and {delay}
    µs; ``limit_data`` {bytes}.

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_<type>_<stream>``.
    """
    return _add(proxy, toxic_type, attributes, stream, toxicity, configuration, secrets)


def add_latency(
    proxy: str,
    latency_ms: int,
    jitter_ms: int = 0,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Delay the data on a link by ``latency_ms`` ± ``jitter_ms`` (a uniform spread).

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_latency_<stream>``.
    """
    attributes = {"latency": latency_ms, "jitter": jitter_ms}
    labels = {"latency": "latency_ms", "jitter": "jitter_ms"}
    return _add(proxy, "latency", attributes, stream, toxicity, configuration, secrets, labels)


def add_bandwidth(
    proxy: str,
    rate_kbytes_s: int,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Cap a link's throughput at ``rate_kbytes_s`` kilobytes per second (at least 1).

    The unit is Toxiproxy's KB/s, not kilobits: 1 KB/s = 8 kbit/s.

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_bandwidth_<stream>``.
    """
    attributes = {"rate": rate_kbytes_s}
    labels = {"rate": "rate_kbytes_s"}
    return _add(proxy, "bandwidth", attributes, stream, toxicity, configuration, secrets, labels)


def add_timeout(
    proxy: str,
    timeout_ms: int,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Stop all data on a link, and close the connection after ``timeout_ms``.

    With 0 the data is held, and the connection kept open, until the toxic is removed.

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_timeout_<stream>``.
    """
    attributes = {"timeout": timeout_ms}
    labels = {"timeout": "timeout_ms"}
    return _add(proxy, "timeout", attributes, stream, toxicity, configuration, secrets, labels)


def add_reset_peer(
    proxy: str,
    timeout_ms: int = 0,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Reset connections (TCP RST) ``timeout_ms`` after their first data (0: at once).

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_reset_peer_<stream>``.
    """
    attributes = {"timeout": timeout_ms}
    labels = {"timeout": "timeout_ms"}
    return _add(proxy, "reset_peer", attributes, stream, toxicity, configuration, secrets, labels)


def add_slow_close(
    proxy: str,
    delay_ms: int,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Delay the closing of connections by ``delay_ms``.

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_slow_close_<stream>``.
    """
    attributes = {"delay": delay_ms}
    labels = {"delay": "delay_ms"}
    return _add(proxy, "slow_close", attributes, stream, toxicity, configuration, secrets, labels)


def add_limit_data(
    proxy: str,
    bytes: int,
    stream: str = "downstream",
    toxicity: float = 1.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Close each connection once ``bytes`` bytes have gone through it.

    ``stream``, ``toxicity`` and the result: see the module's doc. The toxic's name is
    ``lkchaos_limit_data_<stream>``.
    """
    attributes = {"bytes": bytes}
    labels = {"bytes": "bytes"}
    return _add(proxy, "limit_data", attributes, stream, toxicity, configuration, secrets, labels)


def remove_toxic(
    proxy: str, name: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Remove the toxic ``name`` from ``proxy``; a toxic already gone is not an error.

    Returns ``{"proxy", "name", "removed": bool}``.
    """
    _check_proxy_name(proxy)
    proxy = _link(proxy, configuration, secrets)
    _check_toxic_name(name)
    with _connected(f"removing toxic {name} from {proxy}", configuration, secrets) as (toxi, st):
        current = toxi.proxies(require=proxy)[proxy].get("toxics") or []
        present = any(t.get("name") == name for t in current)
        removed = present and toxi.remove_toxic_if_present(proxy, name)
        _verify_gone(toxi, proxy, name)
        ledger.forget(st, "toxic", f"{proxy}/{name}")
    return {"proxy": proxy, "name": name, "removed": removed}


def remove_all_toxics(
    proxy: str = None,  # type: ignore[assignment]
    only_lkchaos: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Remove every toxic of ``proxy`` (of every proxy by default); with ``only_lkchaos``, only
    the toxics lkchaos added (named ``lkchaos_...``).

    Returns ``{"removed": [{"proxy", "name", "type", "stream"}], "count"}``.
    """
    if proxy is not None:
        _check_proxy_name(proxy)
        proxy = _link(proxy, configuration, secrets)
    check_flag("only_lkchaos", only_lkchaos)
    removed: List[Dict[str, Any]] = []
    with _connected("removing toxics", configuration, secrets) as (toxi, st):
        proxies = toxi.proxies(require=proxy)
        for pname in [proxy] if proxy is not None else sorted(proxies):
            for toxic in proxies[pname].get("toxics") or []:
                name = str(toxic.get("name", ""))
                if only_lkchaos and not name.startswith(PREFIX):
                    continue
                gone = toxi.remove_toxic_if_present(pname, name)
                _verify_gone(toxi, pname, name)
                ledger.forget(st, "toxic", f"{pname}/{name}")
                if gone:
                    removed.append({
                        "proxy": pname, "name": name,
                        "type": toxic.get("type"), "stream": toxic.get("stream"),
                    })  # fmt: skip
    return {"removed": removed, "count": len(removed)}


def _set_enabled(
    proxy: str, enabled: bool, configuration: Configuration, secrets: Secrets
) -> Dict[str, Any]:
    _check_proxy_name(proxy)
    proxy = _link(proxy, configuration, secrets)
    verb = "enabling" if enabled else "disabling"
    with _connected(f"{verb} proxy {proxy}", configuration, secrets) as (toxi, st):
        was = bool(toxi.proxies(require=proxy)[proxy].get("enabled", True))
        if not enabled and was:
            ledger.record(st, _fault("proxy_disabled", proxy, "enable_proxy", proxy=proxy))
        if was != enabled:
            toxi.set_enabled(proxy, enabled)
        until(lambda: bool(toxi.proxies(require=proxy)[proxy].get("enabled", True)),
              lambda seen: seen == enabled, f"proxy {proxy} {'enabled' if enabled else 'disabled'}",
              describe=lambda seen: "enabled" if seen else "disabled")
        if enabled:
            ledger.forget(st, "proxy_disabled", proxy)
    return {"proxy": proxy, "enabled": enabled, "changed": was != enabled}


def disable_proxy(
    proxy: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Partition a link: Toxiproxy closes the proxy's listener and its open connections.

    Roll back with ``enable_proxy``. Returns ``{"proxy", "enabled": false, "changed"}``;
    ``changed`` is false when it was disabled already.
    """
    return _set_enabled(proxy, False, configuration, secrets)


def enable_proxy(
    proxy: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Heal a partitioned link: listen again. Returns ``{"proxy", "enabled": true, "changed"}``;
    ``changed`` is false when it was enabled already."""
    return _set_enabled(proxy, True, configuration, secrets)


def reset(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Enable every proxy and remove every toxic (lkchaos's and any other), Toxiproxy's reset.

    Returns what it undid: ``{"reenabled": [proxies], "removed": [{"proxy", "name", "type",
    "stream"}], "count"}``.
    """
    with _connected("resetting Toxiproxy", configuration, secrets) as (toxi, st):
        before = toxi.proxies()
        toxi.reset()

        def clean(now: Dict[str, Dict[str, Any]]) -> bool:
            return all(p.get("enabled", True) and not p.get("toxics") for p in now.values())

        until(toxi.proxies, clean, "Toxiproxy's reset")
        for name, proxy in before.items():
            ledger.forget(st, "proxy_disabled", name)
            for toxic in proxy.get("toxics") or []:
                ledger.forget(st, "toxic", f"{name}/{toxic.get('name')}")
    reenabled = sorted(name for name, p in before.items() if not p.get("enabled", True))
    removed = [
        {"proxy": name, "name": t.get("name"), "type": t.get("type"), "stream": t.get("stream")}
        for name in sorted(before)
        for t in before[name].get("toxics") or []
    ]
    return {"reenabled": reenabled, "removed": removed, "count": len(removed)}
