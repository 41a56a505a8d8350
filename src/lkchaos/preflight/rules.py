"""The argument rules of every lkchaos activity, as the activities' own checkers apply them.

Each rule names the arguments it covers and calls the pure checker of the activity's module
(``_check_toxic``, ``_check_target``, ``rules.check_percent``, ...), so that an action and its
preflight reject exactly the same values. A rule raises ``ActivityFailed``; the problem is
put on the covered argument the message names first. Rules that need the deployment's
settings (the stack domain, the LiveKit nodes, the Redis address map) read them from
:class:`Context`, never from the deployment itself.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chaoslib.exceptions import ActivityFailed

from lkchaos import roles
from lkchaos.network import rules as network_rules
from lkchaos.settings import Settings
from lkchaos.target.model import LinkRole
from lkchaos.values import check_flag, check_int, check_number, check_service_name, check_text


class _Module:
    """A module imported when one of its attributes is first read. The rules cover every
    lkchaos activity, but a run needs the checkers of its own activities only: importing all
    of them (the rtc SDK, numpy, the LiveKit API, aiohttp, ...) took about a second of each
    ``chaos run``'s start."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


if TYPE_CHECKING:
    from lkchaos.dns import actions as dns_actions
    from lkchaos.dns import probes as dns_probes
    from lkchaos.docker import actions as docker_actions
    from lkchaos.hooks import probes as hooks_probes
    from lkchaos.ingress import probes as ingress_probes
    from lkchaos.livekit import actions as livekit_actions
    from lkchaos.livekit import hold as livekit_hold
    from lkchaos.livekit import probes as livekit_probes
    from lkchaos.network import actions as network_actions
    from lkchaos.prometheus import probes as prom_probes
    from lkchaos.redis import actions as redis_actions
    from lkchaos.redis import probes as redis_probes
    from lkchaos.stress import actions as stress_actions
    from lkchaos.tls import actions as tls_actions
    from lkchaos.tls import probes as tls_probes
    from lkchaos.toxiproxy import actions as toxi_actions
    from lkchaos.toxiproxy import probes as toxi_probes
    from lkchaos.voice import held, session
else:
    dns_actions = _Module("lkchaos.dns.actions")
    dns_probes = _Module("lkchaos.dns.probes")
    docker_actions = _Module("lkchaos.docker.actions")
    hooks_probes = _Module("lkchaos.hooks.probes")
    ingress_probes = _Module("lkchaos.ingress.probes")
    livekit_actions = _Module("lkchaos.livekit.actions")
    livekit_hold = _Module("lkchaos.livekit.hold")
    livekit_probes = _Module("lkchaos.livekit.probes")
    network_actions = _Module("lkchaos.network.actions")
    prom_probes = _Module("lkchaos.prometheus.probes")
    redis_actions = _Module("lkchaos.redis.actions")
    redis_probes = _Module("lkchaos.redis.probes")
    stress_actions = _Module("lkchaos.stress.actions")
    tls_actions = _Module("lkchaos.tls.actions")
    tls_probes = _Module("lkchaos.tls.probes")
    toxi_actions = _Module("lkchaos.toxiproxy.actions")
    toxi_probes = _Module("lkchaos.toxiproxy.probes")
    held = _Module("lkchaos.voice.held")
    session = _Module("lkchaos.voice.session")

Args = Mapping[str, Any]
#: Toxiproxy link roles (``toxiproxy.links`` keys of a target).
LINK_ROLES: tuple[str, ...] = LinkRole.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Context:
    """What the rules may know besides the arguments: settings, and the sampled probes."""

    settings: Settings | None = None
    sampled: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Rule:
    arguments: tuple[str, ...]
    check: Callable[[Args, Context], object]


def _rule(*arguments: str) -> Callable[[Callable[[Args, Context], object]], Rule]:
    return lambda check: Rule(arguments, check)


def blame(rule: Rule, message: str, arguments: Args) -> str:
    """The covered argument a checker's message names first; if it names none, the first
    covered argument that was given."""
    found = [(m.start(), name) for name in rule.arguments
             if (m := re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", message))]  # fmt: skip
    given = [name for name in rule.arguments if arguments.get(name) is not None]
    return min(found)[1] if found else (given or rule.arguments)[0]


# --- shared pieces ---------------------------------------------------------------------------

def _resolved(c: Context, label: str, values: list[Any], single: bool = False) -> list[str]:
    """The runtime names ``values`` stand for on the target in use, as the actions resolve
    them (:func:`lkchaos.roles.targets`); without settings, the values as they are."""
    if c.settings is None:
        return [str(value) for value in values]
    return roles.targets(c.settings, [str(value) for value in values], label, single)


def _target(a: Args, c: Context) -> object:
    candidates = docker_actions._check_target(a.get("service"), a.get("one_of"))
    return _resolved(c, "service" if a.get("one_of") is None else "one_of", candidates)


def _service(a: Args, c: Context) -> list[str]:
    return _resolved(c, "service", docker_actions._check_target(a.get("service"), None),
                     single=True)  # fmt: skip


def _network_service(a: Args, c: Context) -> object:
    network_actions._check_service(a.get("service"))
    return _service(a, c)


def _optional_network_service(a: Args, c: Context) -> object:
    return None if a.get("service") is None else _network_service(a, c)


def _link(c: Context, proxy: Any) -> None:
    """A link role (``agent_speech_to_text``) must be one the target's toxiproxy.links maps."""
    settings = c.settings
    if (settings is not None and settings.toxiproxy_url and proxy in LINK_ROLES
            and proxy not in settings.toxiproxy_links):  # fmt: skip
        raise ActivityFailed(
            f"proxy {proxy!r} is a link role the target does not map: add `links: {{{proxy}: "
            "YOUR_PROXY}` to its toxiproxy section, or name the proxy itself")


def _proxy(a: Args, c: Context) -> object:
    name = toxi_actions._check_proxy_name(a.get("proxy"))
    _link(c, name)
    return name


def _latency_args(a: Args, c: Context) -> object:
    toxi_probes._check_latency_args(a.get("proxy"), a.get("samples"), a.get("path"),
                                    a.get("address"), a.get("timeout"), a.get("max_median_ms"))
    _link(c, a.get("proxy"))
    return None


def _services(a: Args, c: Context) -> object:
    """Probes' ``services``: names or roles (the harness may be looked at)."""
    values = a.get("services") or []
    for value in values:
        check_service_name("services", value)
    if c.settings is not None:
        for value in values:
            roles.resolve(c.settings, str(value), "services")
    return values


def _probed_service(a: Args, c: Context) -> object:
    """A probe's one ``service``: a name, a role of one member or a role's member."""
    value = check_service_name("service", a.get("service"))
    return value if c.settings is None else roles.resolve_one(c.settings, value)


def _peers(a: Args, c: Context) -> object:
    peers = network_actions._check_peers(a.get("service"), a.get("peers"))
    if c.settings is None:
        return peers
    try:
        own = roles.resolve_one(c.settings, str(a.get("service")))
    except ActivityFailed:  # the service's own rule reports it
        own = ""
    return network_actions._peer_names(c.settings, own, peers)


def _positive(name: str, unit: str = "seconds") -> Rule:
    return Rule((name,), lambda a, c: None if a.get(name) is None else check_number(
        name, a.get(name), unit, strict=True))


def _non_negative(name: str, unit: str = "seconds") -> Rule:
    return Rule((name,), lambda a, c: check_number(name, a.get(name), unit))


def _in_domain(a: Args, c: Context) -> object:
    name = dns_actions._check_name(a.get("name"))
    domain = c.settings.domain.lower() if c.settings else ""
    if domain and name != domain and not name.endswith(f".{domain}"):
        raise ActivityFailed(f"name must be a name in the stack domain {domain!r} (the "
                             f"`domain` setting), such as lk.{domain}")  # fmt: skip
    return name


def _node(a: Args, c: Context) -> object:
    livekit_actions._check_room(a.get("name"), a.get("empty_timeout", 1), a.get("node", 0))
    urls = c.settings.livekit_node_urls if c.settings else ()
    if urls and not 0 <= a.get("node", 0) < len(urls):
        raise ActivityFailed(f"node must be from 0 to {len(urls) - 1}: livekit_node_urls has "
                             f"{len(urls)} nodes ({', '.join(urls)})")  # fmt: skip
    return None


def _token_skew(a: Args, c: Context) -> object:
    node = a.get("node")
    livekit_probes._check_skew(a.get("skew_s", 0.0), node, a.get("ttl_s", 600),
                               a.get("timeout", 5.0))  # fmt: skip
    check_text("room", a.get("room", "lkchaos-clock-skew"))
    urls = c.settings.livekit_node_urls if c.settings else ()
    if urls and node is not None and not 0 <= node < len(urls):
        raise ActivityFailed(f"node must be from 0 to {len(urls) - 1}: livekit_node_urls has "
                             f"{len(urls)} nodes ({', '.join(urls)})")  # fmt: skip
    return None


#: ``reset_peer`` needs no attribute: a check of it with ``{}`` checks the stream and toxicity.
_STREAM = Rule(("stream",), lambda a, c: toxi_actions._check_toxic(
    "x", "reset_peer", {}, a.get("stream"), 1.0))
_TOXICITY = Rule(("toxicity",), lambda a, c: toxi_actions._check_toxic(
    "x", "reset_peer", {}, "downstream", a.get("toxicity")))


def _toxic(toxic_type: str, labels: dict[str, str]) -> list[Rule]:
    def check(a: Args, c: Context) -> object:
        attributes = {key: a.get(label) for key, label in labels.items() if label in a}
        return toxi_actions._check_toxic("x", toxic_type, attributes, "downstream", 1.0, labels)

    return [Rule(tuple(labels.values()), check), _STREAM, _TOXICITY]


def _netcheck(name: str, check: Callable[..., Any], *extra: Any, **kw: Any) -> Rule:
    return Rule((name,), lambda a, c: network_actions._checked(check, a.get(name), *extra, **kw))


def _redis_service(a: Args, c: Context) -> object:
    if a.get("service") is None:
        return None
    names = _service(a, c)
    if c.settings is not None:
        redis = [n for role in ("redis_primary", "redis_replica")
                 for n in c.settings.roles.get(role, ())]  # fmt: skip
        if not set(names) <= set(redis):
            raise ActivityFailed("service must be a Redis container of the target (roles "
                                 f"redis_primary, redis_replica): {', '.join(redis) or 'none'}")
    return None


def _sampled(a: Args, c: Context) -> object:
    probe = check_text("probe", a.get("probe"))
    if probe not in c.sampled:
        names = ", ".join(sorted(c.sampled)) or "none: declare lkchaos.controls.sampling"
        raise ActivityFailed(f"probe must name a probe of the sampling control; it samples: "
                             f"{names}")  # fmt: skip
    return probe


def _sample_count(a: Args, c: Context) -> object:
    count = check_int("count", a.get("count", 1), "samples", minimum=1, maximum=100)
    if a.get("min_ok") is not None:
        check_int("min_ok", a.get("min_ok"), "samples", minimum=1, maximum=count)
    return None


def _held_turn(a: Args, c: Context) -> object:
    held._check_name(a.get("caller", "caller"))
    held._check_wait(a.get("timeout", 30.0))
    callers = check_int("callers", a.get("callers", 1), "calls", minimum=1,
                        maximum=held.MAX_CALLERS)  # fmt: skip
    try:
        session.Options(duration_s=a.get("duration_s", 900.0),
                        turn_gap_s=a.get("turn_gap_s", 0.3),
                        transcribe_every=a.get("transcribe_every", 1),
                        start_delay_s=a.get("stagger_s", 2.5))  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise ActivityFailed(f"held call: {exc}") from exc
    held._check_overdue(a.get("overdue_s"), a.get("every_s"))
    held._check_budget(a.get("max_latency_s"))
    return callers


def _held_conversation(a: Args, c: Context) -> object:
    check_int("turns", a.get("turns", 10), "turns", minimum=1, maximum=500)
    return check_number("min_answered_pct", a.get("min_answered_pct", 100.0), "%",
                        maximum=100.0)  # fmt: skip


def _urls(a: Args, c: Context) -> object:
    urls = a.get("urls")
    if urls is None:
        return None
    if not isinstance(urls, list) or not urls:
        raise ActivityFailed(f"urls must be a non-empty list of node URLs, not {urls!r}")
    for url in urls:
        if not isinstance(check_text("urls", url), str) or not re.match(r"https?://\w", url):
            raise ActivityFailed(f"urls must be http(s) URLs such as http://127.0.0.1:27880, "
                                 f"not {url!r}")  # fmt: skip
    return None


def _snapshot(a: Args, c: Context) -> object:
    name = a.get("name")
    if not isinstance(name, str) or not livekit_probes.SNAPSHOT_NAME.fullmatch(name):
        raise ActivityFailed(f"name must be letters, digits, '.', '_' or '-' (not first), at "
                             f"most 100, not {name!r}")  # fmt: skip
    return None


STAGES = ("join", "dispatch", "first_reply_audio", "reply", "reply_pause")


def _voice(a: Args, c: Context) -> object:
    question = a.get("question")
    if question is not None:
        check_text("question", question, option_safe=True)
    expected = a.get("expected")
    if expected is not None:
        if not isinstance(expected, list) or not expected:
            raise ActivityFailed(f"expected must be a non-empty list of answers, not {expected!r}")
        for answer in expected:
            check_text("expected", answer)
    stages = a.get("stage_timeouts")
    if stages is not None:
        if not isinstance(stages, dict) or set(stages) - set(STAGES):
            raise ActivityFailed(f"stage_timeouts may set {', '.join(STAGES)} (seconds), not "
                                 f"{stages!r}")  # fmt: skip
        for key, value in stages.items():  # reply_pause may be 0: not listened to on
            check_number(f"stage_timeouts.{key}", value, "seconds", strict=key != "reply_pause")
    return None


def _calls(a: Args, c: Context) -> object:
    # voice_round_trips takes ints only (3, not 3.0).
    calls = check_int("calls", a.get("calls"), "calls", minimum=1, maximum=20)
    if a.get("min_answered") is not None:
        check_int("min_answered", a.get("min_answered"), "calls", minimum=1, maximum=calls)
    return None


def _hold(a: Args, c: Context) -> object:
    try:
        return livekit_hold.check(a.get("room"), a.get("count"), a.get("duration_s"))
    except livekit_hold.HoldError as exc:
        raise ActivityFailed(str(exc)) from exc


def _release(a: Args, c: Context) -> object:
    return _hold({"room": a.get("room"), "count": 1, "duration_s": 1}, c)


def _tls(a: Args, c: Context) -> object:
    tls_probes._check(a.get("name"), a.get("address"), a.get("timeout"))
    return None


def _tls_names(a: Args, c: Context) -> object:
    names = a.get("names")
    if names is not None and (not isinstance(names, list) or not names):
        raise ActivityFailed(f"names must be a non-empty list of TLS names, not {names!r}")
    for name in names or []:
        tls_probes._check(name, None, 1)
    return None


def _checklist(a: Args, c: Context) -> object:
    from lkchaos.validate import probes as validate_probes

    return validate_probes._check_args(a.get("section"), a.get("only"), a.get("skip"),
                                       a.get("timeout", 30.0))


def _path(a: Args, c: Context) -> object:
    path = check_text("path", a.get("path"))
    if not path.startswith("/"):
        raise ActivityFailed(f"path must start with '/', not {path!r}")
    return path


def _optional_mib(name: str) -> Rule:
    return Rule((name,), lambda a, c: stress_actions._check_megabytes(name, a.get(name),
                                                                      optional=True))


_VOICE = Rule(("question", "expected", "stage_timeouts"), _voice)
_URLS = Rule(("urls",), _urls)

RULES: dict[str, list[Rule]] = {
    # docker
    **{f"lkchaos.docker.actions.{f}": [Rule(("service", "one_of"), _target),
                                       _rule("signal")(lambda a, c: docker_actions._signal_name(
                                           a.get("signal", "SIGKILL")))]
       for f in ("kill_service",)},
    **{f"lkchaos.docker.actions.{f}": [Rule(("service", "one_of"), _target),
                                       _rule("timeout")(lambda a, c: docker_actions
                                                        ._check_timeout(a.get("timeout")))]
       for f in ("stop_service", "restart_service")},
    "lkchaos.docker.actions.crash_service": [
        Rule(("service",), _service),
        _rule("signal")(lambda a, c: docker_actions._signal_name(a.get("signal", "SIGKILL")))],
    "lkchaos.docker.actions.pause_service": [Rule(("service", "one_of"), _target)],
    "lkchaos.docker.actions.start_service": [Rule(("service",), _service)],
    "lkchaos.docker.actions.unpause_service": [Rule(("service",), _service)],
    "lkchaos.docker.probes.services_health": [Rule(("services",), _services)],
    "lkchaos.docker.probes.all_services_healthy": [Rule(("services",), _services)],
    "lkchaos.docker.probes.service_health": [Rule(("service",), _probed_service)],
    "lkchaos.docker.probes.service_restarts": [Rule(("service",), _probed_service)],
    # validate
    "lkchaos.validate.probes.checklist": [Rule(("section", "only", "skip", "timeout"),
                                               _checklist)],
    # stress
    "lkchaos.stress.actions.cpu_pressure": [
        Rule(("service",), _service),
        _rule("workers")(lambda a, c: stress_actions._check_workers(a.get("workers", 1))),
        _rule("load_percent")(lambda a, c: stress_actions._check_load(
            a.get("load_percent", 100))),
        _rule("duration_s")(lambda a, c: stress_actions._check_duration(
            a.get("duration_s", 60)))],
    "lkchaos.stress.actions.memory_pressure": [
        Rule(("service",), _service),
        _rule("megabytes")(lambda a, c: stress_actions._check_megabytes(
            "megabytes", a.get("megabytes"))),
        _rule("duration_s")(lambda a, c: stress_actions._check_duration(
            a.get("duration_s", 60)))],
    "lkchaos.stress.actions.end_pressure": [Rule(("service",), _service)],
    "lkchaos.stress.actions.fill_disk": [
        Rule(("service",), _service),
        _rule("path")(lambda a, c: stress_actions._check_path(a.get("path"))),
        _optional_mib("megabytes"), _optional_mib("leave_free_mb")],
    "lkchaos.stress.actions.free_disk": [
        Rule(("service",), _service),
        _rule("path")(lambda a, c: stress_actions._check_path(a.get("path")))],
    # toxiproxy
    "lkchaos.toxiproxy.actions.add_toxic": [
        Rule(("proxy",), _proxy),
        _rule("toxic_type", "attributes")(lambda a, c: toxi_actions._check_toxic(
            "x", a.get("toxic_type"), a.get("attributes"), "downstream", 1.0)),
        _STREAM, _TOXICITY,
    ],  # fmt: skip
    "lkchaos.toxiproxy.actions.add_latency": [
        Rule(("proxy",), _proxy), *_toxic("latency", {"latency": "latency_ms",
                                                     "jitter": "jitter_ms"})],
    "lkchaos.toxiproxy.actions.add_bandwidth": [
        Rule(("proxy",), _proxy), *_toxic("bandwidth", {"rate": "rate_kbytes_s"})],
    "lkchaos.toxiproxy.actions.add_timeout": [
        Rule(("proxy",), _proxy), *_toxic("timeout", {"timeout": "timeout_ms"})],
    "lkchaos.toxiproxy.actions.add_reset_peer": [
        Rule(("proxy",), _proxy), *_toxic("reset_peer", {"timeout": "timeout_ms"})],
    "lkchaos.toxiproxy.actions.add_slow_close": [
        Rule(("proxy",), _proxy), *_toxic("slow_close", {"delay": "delay_ms"})],
    "lkchaos.toxiproxy.actions.add_limit_data": [
        Rule(("proxy",), _proxy), *_toxic("limit_data", {"bytes": "bytes"})],
    "lkchaos.toxiproxy.actions.remove_toxic": [
        Rule(("proxy",), _proxy),
        _rule("name")(lambda a, c: toxi_actions._check_toxic_name(a.get("name")))],
    "lkchaos.toxiproxy.actions.remove_all_toxics": [
        _rule("proxy")(lambda a, c: None if a.get("proxy") is None else _proxy(a, c))],
    "lkchaos.toxiproxy.actions.disable_proxy": [Rule(("proxy",), _proxy)],
    "lkchaos.toxiproxy.actions.enable_proxy": [Rule(("proxy",), _proxy)],
    "lkchaos.toxiproxy.probes.link_latency": [
        _rule("proxy", "samples", "path", "address", "timeout", "max_median_ms")(
            _latency_args)],
    # network
    "lkchaos.network.actions.partition": [
        Rule(("service",), _network_service),
        _netcheck("direction", network_rules.check_direction),
        _rule("peers")(_peers)],
    "lkchaos.network.actions.media_packet_loss": [
        Rule(("service",), _network_service),
        _netcheck("percent", network_rules.check_percent),
        _netcheck("ports", network_rules.parse_ports, network_rules.MEDIA_PORTS)],
    "lkchaos.network.actions.limit_bandwidth": [
        Rule(("service",), _network_service),
        _netcheck("rate_kbit", network_rules.check_rate),
        _rule("ports")(lambda a, c: None if a.get("ports") is None else network_actions
                       ._checked(network_rules.parse_ports, a.get("ports"), ()))],
    "lkchaos.network.actions.block_udp": [
        Rule(("service",), _network_service),
        _netcheck("ports", network_rules.parse_ports, network_rules.UDP_ICE_PORTS,
                  udp_only=True)],
    "lkchaos.network.actions.heal_partition": [Rule(("service",), _network_service)],
    "lkchaos.network.actions.clear_network_faults": [
        Rule(("service",), _optional_network_service)],
    # dns
    "lkchaos.dns.actions.stop_resolver": [
        _rule("mode")(lambda a, c: dns_actions._check_mode(a.get("mode")))],
    "lkchaos.dns.actions.nxdomain_name": [Rule(("name",), _in_domain)],
    "lkchaos.dns.actions.servfail_name": [Rule(("name",), _in_domain)],
    "lkchaos.dns.actions.restore_name": [Rule(("name",), _in_domain)],
    "lkchaos.dns.actions.wrong_address": [
        Rule(("name",), _in_domain),
        _rule("address")(lambda a, c: dns_actions._check_address(a.get("address")))],
    "lkchaos.dns.probes.resolve_names": [
        _rule("names", "expected", "rdtype", "timeout", "max_latency_ms", "server")(
            lambda a, c: dns_probes._check(
                a.get("names") if a.get("names") is not None else ["lk.chaos.test"],
                a.get("expected"), a.get("rdtype"), a.get("timeout"),
                a.get("max_latency_ms"), a.get("server")))],  # fmt: skip
    # tls
    "lkchaos.tls.actions.swap_certificate": [
        _rule("name", "kind", "days")(lambda a, c: tls_actions._check(
            a.get("name"), a.get("kind"), a.get("days")))],
    "lkchaos.tls.actions.restore_certificate": [
        _rule("name")(lambda a, c: tls_actions._check(a.get("name"), "expired", None))],
    **{f"lkchaos.tls.probes.{f}": [Rule(("name", "address", "timeout"), _tls)]
       for f in ("certificate", "protocol_versions", "cipher_strength")},
    "lkchaos.tls.probes.hsts": [
        Rule(("name", "address", "timeout"), _tls),
        Rule(("path",), _path),
        _rule("min_max_age")(lambda a, c: check_int("min_max_age", a.get("min_max_age"),
                                                    "seconds"))],
    "lkchaos.tls.probes.certificate_expiry": [
        _non_negative("warn_days", "days"), _non_negative("critical_days", "days"),
        Rule(("names",), _tls_names),
        _rule("address", "timeout")(lambda a, c: tls_probes._check(
            "x", a.get("address"), a.get("timeout")))],
    # redis
    "lkchaos.redis.actions.kill_primary": [
        _rule("signal")(lambda a, c: docker_actions._signal_name(a.get("signal", "SIGKILL")))],
    "lkchaos.redis.actions.sentinel_failover": [
        _rule("wait_s")(lambda a, c: redis_actions._check_wait(a.get("wait_s")))],
    "lkchaos.redis.actions.restore_old_primary": [
        Rule(("service",), _redis_service),
        _rule("wait_s")(lambda a, c: redis_actions._check_wait(a.get("wait_s"))),
        _rule("reconfigure")(lambda a, c: check_flag("reconfigure", a.get("reconfigure", True)))],
    "lkchaos.redis.actions.stall_primary": [
        _rule("pause_ms", "every_s", "duration_s", "mode")(
            lambda a, c: redis_actions._check_stall(
                a.get("pause_ms", 1500), a.get("every_s", 2.0), a.get("duration_s", 30.0),
                a.get("mode", "ALL")))],
    "lkchaos.redis.actions.unstall_primary": [
        _rule("wait_s")(lambda a, c: redis_actions._check_wait(a.get("wait_s", 30.0)))],
    **{f"lkchaos.redis.probes.{f}": [
        _rule("name")(lambda a, c: redis_probes._check_name(a.get("name", "primary")))]
       for f in ("remember_primary", "primary_kept")},
    # livekit
    "lkchaos.livekit.actions.create_room": [Rule(("name", "empty_timeout", "node"), _node)],
    "lkchaos.livekit.actions.delete_room": [Rule(("name", "node"), _node)],
    "lkchaos.livekit.actions.hold_participants": [
        Rule(("room", "count", "duration_s"), _hold)],
    "lkchaos.livekit.actions.release_participants": [Rule(("room",), _release)],
    "lkchaos.livekit.actions.kill_node_hosting": [
        _rule("room", "room_prefix")(lambda a, c: livekit_actions._check_hosting(
            a.get("room"), a.get("room_prefix"))),
        _rule("signal")(lambda a, c: docker_actions._signal_name(a.get("signal", "SIGKILL")))],
    # webhook receiver
    "lkchaos.hooks.probes.room_webhooks": [
        _rule("room", "since_s")(lambda a, c: hooks_probes._check_room_args(
            a.get("room"), a.get("since_s", 600.0))),
        _rule("late_s", "max_delay_s", "wait_finished_s")(lambda a, c: hooks_probes._check_common(
            a.get("late_s", 5.0), a.get("max_delay_s"), a.get("wait_finished_s", 0.0),
            "wait_finished_s"))],
    "lkchaos.hooks.probes.webhooks_for_call": [
        _rule("late_s", "max_delay_s", "finish_wait_s")(lambda a, c: hooks_probes._check_common(
            a.get("late_s", 5.0), a.get("max_delay_s"), a.get("finish_wait_s", 60.0),
            "finish_wait_s")),
        _rule("timeout")(lambda a, c: check_number("timeout", a.get("timeout", 45.0), "seconds",
                                                   strict=True, maximum=600))],
    "lkchaos.hooks.probes.alert_delivered": [
        _rule("alertname", "status", "within_s", "since_s", "labels")(
            lambda a, c: hooks_probes._check_alert(
                a.get("alertname"), a.get("status", "firing"), a.get("within_s", 60.0),
                a.get("since_s", 120.0), a.get("labels")))],
    "lkchaos.livekit.probes.nodes_health": [_URLS, _positive("timeout")],
    "lkchaos.livekit.probes.room_state": [_URLS, _positive("timeout"), _non_negative("wait")],
    "lkchaos.livekit.probes.snapshot_room_state": [
        Rule(("name",), _snapshot), _URLS, _positive("timeout"), _non_negative("wait")],
    "lkchaos.livekit.probes.compare_room_state": [
        Rule(("name",), _snapshot), _URLS, _positive("timeout"), _non_negative("wait"),
        _rule("ignore_rooms_prefix")(lambda a, c: None if a.get("ignore_rooms_prefix") is None
                                     else check_text("ignore_rooms_prefix",
                                                     a.get("ignore_rooms_prefix"))),
        _rule("min_participants")(lambda a, c: livekit_probes._check_min_participants(
            a.get("min_participants", 0)))],
    "lkchaos.livekit.probes.roomservice_latency": [
        _URLS, _positive("timeout"), _positive("max_ms", "ms")],
    "lkchaos.livekit.probes.join_token_skew": [
        Rule(("skew_s", "node", "ttl_s", "timeout", "room"), _token_skew)],
    "lkchaos.livekit.probes.node_drained": [
        _rule("service")(lambda a, c: _probed_service({"service": a.get(
            "service", "livekit_node:1")}, c)),
        _non_negative("within_s"), _non_negative("wait_s")],
    # voice
    "lkchaos.voice.probes.voice_round_trip": [
        _VOICE, _positive("timeout"), _positive("max_latency_s")],
    "lkchaos.voice.probes.voice_round_trips": [
        _VOICE, _positive("timeout"), _positive("max_median_latency_s"),
        Rule(("calls", "min_answered"), _calls)],
    "lkchaos.voice.probes.held_call_turn": [
        _VOICE, _rule("caller", "timeout", "callers", "duration_s", "turn_gap_s",
                      "transcribe_every", "stagger_s", "overdue_s", "every_s",
                      "max_latency_s")(_held_turn)],
    "lkchaos.voice.probes.end_held_call": [_rule("caller")(lambda a, c: held._check_name(
        a.get("caller", "caller")))],
    "lkchaos.voice.probes.held_conversation": [
        _VOICE, _positive("timeout"), _positive("max_latency_p95_s"),
        _rule("turns", "min_answered_pct")(_held_conversation)],
    # ingress
    "lkchaos.ingress.probes.rtmp_publish": [
        _rule("room", "duration_s", "timeout", "endpoint")(lambda a, c: ingress_probes._check(
            a.get("room", "lkchaos-ingress-rtmp"), a.get("duration_s", 5.0),
            a.get("timeout", 30.0), a.get("endpoint"))),
        _rule("pusher")(lambda a, c: ingress_probes._check_pusher_name(a.get("pusher", "auto"))),
        _rule("publishes")(lambda a, c: ingress_probes._check_publishes(a.get("publishes", 1)))],
    "lkchaos.ingress.probes.whip_publish": [
        _rule("room", "duration_s", "timeout", "endpoint")(lambda a, c: ingress_probes._check(
            a.get("room", "lkchaos-ingress-whip"), a.get("duration_s", 5.0),
            a.get("timeout", 30.0), a.get("endpoint"))),
        _rule("publishes")(lambda a, c: ingress_probes._check_publishes(a.get("publishes", 1)))],
    # prometheus
    "lkchaos.prometheus.probes.query": [
        _rule("expr", "timeout")(lambda a, c: prom_probes._check_query(
            a.get("expr"), a.get("timeout")))],
    "lkchaos.prometheus.probes.alert_state": [
        _rule("alertname", "labels")(lambda a, c: prom_probes._check_alert(
            a.get("alertname"), a.get("labels")))],
    "lkchaos.prometheus.probes.wait_for_alert": [
        _rule("alertname", "state", "within_s", "labels", "interval_s")(
            lambda a, c: prom_probes._check_wait(a.get("alertname"), a.get("state"),
                                                 a.get("within_s"), a.get("labels"),
                                                 a.get("interval_s")))],
    "lkchaos.prometheus.probes.targets_up": [
        _rule("jobs", "timeout")(lambda a, c: prom_probes._check_targets(
            a.get("jobs"), a.get("timeout")))],
    "lkchaos.prometheus.probes.alertmanager_alerts": [
        _rule("alertname")(lambda a, c: None if a.get("alertname") is None else check_text(
            "alertname", a.get("alertname")))],
    # the run itself
    "lkchaos.controls.probes.recovery": [
        Rule(("probe",), _sampled),
        _non_negative("wait_s"), _non_negative("stable_s")],
    "lkchaos.controls.probes.sampled": [
        Rule(("probe",), _sampled), _positive("timeout_s"),
        _rule("count", "min_ok")(_sample_count)],
    "lkchaos.controls.probes.answered_during_fault": [
        Rule(("probe",), _sampled), _positive("within_s"),
        _rule("action")(lambda a, c: None if a.get("action") is None else check_text(
            "action", a.get("action")))],
    "lkchaos.controls.probes.sessions_answered": [
        Rule(("probe",), _sampled), _positive("timeout_s"),
        _rule("sessions")(lambda a, c: None if a.get("sessions") is None else check_int(
            "sessions", a.get("sessions"), "sessions", minimum=1, maximum=1000)),
        _rule("key")(lambda a, c: check_text("key", a.get("key", "room")))],
}
