"""Network faults Toxiproxy cannot express, inside a service's own network namespace.

A short-lived sidecar (``lkchaos/nettools``, built on demand from the Dockerfile inside this
package) joins the target container's network namespace with ``NET_ADMIN`` and adds iptables
rules or tc qdiscs there; nothing on the host changes. Every rule carries the comment
``lkchaos:<fault id>:<kind>`` and every qdisc an lkchaos handle, so a clear removes exactly
those. ``service`` and ``peers`` name roles (``livekit_node:2``) or runtime names (see
:mod:`lkchaos.roles`). Each action refuses a container the target does not describe, the
harness (``voice_prober``), a stopped service and bad arguments before it changes anything,
writes the fault to the ledger before it applies it, and returns what it applied::

    {"service": "livekit-2", "action": "media_packet_loss", "fault_id": "3f2a9c0d1b2e",
     "mechanism": "iptables", "percent": 20.0, "ports": ["7882/udp", "3478/udp", ...],
     "rules": ["filter -I INPUT ! -i lo -p udp -m multiport --ports ... -j DROP", ...],
     "qdiscs": [], "replaced": {"rules": [], "qdiscs": []}}

Each action returns only once the sidecar's listing, taken in the same run right after the
change, shows the fault's rules (by its id) and qdiscs; a rollback only once the listing finds
none left. Otherwise it fails (``lkchaos.verify.NotInEffect``).

Rollbacks (safe to run when there is nothing to undo): ``heal_partition`` for ``partition``,
``clear_network_faults`` for all of them. Ports are ``PORT`` or ``LOW-HIGH``, with ``/udp`` or
``/tcp`` (neither: both), and match traffic to or from them. Example::

    {"type": "action", "name": "lose-media-on-node-2",
     "provider": {"type": "python", "module": "lkchaos.network.actions",
                  "func": "media_packet_loss",
                  "arguments": {"service": "livekit_node:2", "percent": 20}}}
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Dict, List, TypeVar

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import roles
from lkchaos.docker.client import docker_client, no_container, runtime_containers
from lkchaos.errors import LkChaosError
from lkchaos.network import rules, sidecar
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.values import check_service_name
from lkchaos.verify import NotInEffect

__all__ = [
    "partition", "heal_partition", "media_packet_loss", "limit_bandwidth", "block_udp",
    "clear_network_faults",
]  # fmt: skip

UNDO = "lkchaos.network.actions"
LEDGER_PREFIX = "network-"
T = TypeVar("T")


def _checked(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return check(*args, **kwargs)
    except rules.RuleError as exc:
        raise ActivityFailed(str(exc)) from exc


@contextmanager
def _engine() -> Iterator[Any]:
    try:
        client = docker_client()
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    try:
        yield client
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    finally:
        client.close()


def _target(containers: Dict[str, Any], settings: Settings, service: Any, role: str) -> Any:
    if not isinstance(service, str) or not service:
        raise ActivityFailed(f"{role} must name a role or a service, not {service!r}")
    harness = roles.harness(settings)
    if role == "service" and service in harness:
        raise ActivityFailed(f"{service!r} is lkchaos's own test harness, not a target")
    if service not in containers:
        offered = set(containers) - (harness if role == "service" else set())
        raise ActivityFailed(no_container(service, settings, offered))
    return containers[service]


def _check_service(service: Any) -> str:
    name = check_service_name("service", service)
    if name in roles.HARNESS_ROLES:
        raise ActivityFailed(f"{name!r} is lkchaos's own test harness, not a target")
    return name


def _one(settings: Settings, service: str) -> str:
    """The one runtime name ``service`` (a role, a role's member or a runtime name) stands for."""
    return roles.targets(settings, [service], single=True)[0]


def _peer_names(settings: Settings, service: str, peers: List[str]) -> List[str]:
    """The runtime names of ``peers`` (roles resolved), none of them ``service``'s own
    (a runtime name): a service is not partitioned from itself."""
    names = [name for peer in peers for name in roles.resolve(settings, peer, "peers")]
    if service in names:
        raise ActivityFailed(f"{service!r} cannot be partitioned from itself: peers {peers} "
                             "include it")  # fmt: skip
    return names


def _check_peers(service: Any, peers: Any) -> List[str]:
    if isinstance(peers, str) or not isinstance(peers, list | tuple) or not peers:
        raise ActivityFailed(f"peers must be a non-empty list of services, not {peers!r}")
    for peer in peers:
        check_service_name("peers", peer)
    if service in peers:
        raise ActivityFailed(f"{service!r} cannot be partitioned from itself")
    return list(peers)


def _running(container: Any) -> bool:
    container.reload()
    return str(container.status) in ("running", "paused")


def _running_target(client: Any, settings: Settings, service: Any) -> Any:
    containers = runtime_containers(client, settings)
    target = _target(containers, settings, service, "service")
    if not _running(target):
        raise ActivityFailed(f"{service} is {target.status}, not running: start it first "
                             "(lkchaos.docker.actions.start_service)")  # fmt: skip
    return target


def _record(settings: Settings, kind: str, service: str, undo: str) -> ledger.Fault:
    return ledger.record(settings.state_dir, ledger.Fault(
        LEDGER_PREFIX + kind, service, UNDO, undo, {"service": service}))  # fmt: skip


def _check_in_effect(
    listing: Dict[str, List[Dict[str, Any]]], fault: ledger.Fault, rule_count: int,
    tc: Sequence[str],
) -> None:  # fmt: skip
    """The sidecar's listing after the apply shows this fault's rules and qdiscs, or raise."""
    ours = [r for r in listing["rules"] if r["fault_id"] == fault.id]
    devices = {c.split(" dev ", 1)[1].split()[0] for c in tc if " root " in c and " dev " in c}
    shaped = {q["device"] for q in listing["qdiscs"]}
    if len(ours) != rule_count or not devices <= shaped:
        qdiscs = f", and its qdisc on {sorted(shaped)} of {sorted(devices)}" if devices else ""
        raise NotInEffect(
            f"{fault.kind} on {fault.target}: right after the apply the kernel lists "
            f"{len(ours)} of its {rule_count} iptables rules{qdiscs}; `lkchaos recover` "
            "removes what was added"
        )


def _apply(
    client: Any, target: Any, settings: Settings, fault: ledger.Fault, script: str,
    replaces: bool, rule_count: int = 0, tc: Sequence[str] = (),
) -> Dict[str, Any]:  # fmt: skip
    """Run an apply script and verify, in the same sidecar run, that the kernel lists the
    fault's rules and qdiscs; on failure take back what it added (when it replaces its kind).
    Returns what the apply replaced."""
    kind = fault.kind.removeprefix(LEDGER_PREFIX)
    try:
        output = sidecar.run(client, target, rules.verified(script, (kind,)))
        head, tail = _checked(rules.split_verified, output)
        _check_in_effect(rules.parse_cleared(tail), fault, rule_count, tc)
        return rules.parse_cleared(head)
    except (LkChaosError, NotInEffect) as exc:
        if replaces:
            try:
                sidecar.clear(client, target, (kind,))
                ledger.forget(settings.state_dir, fault.kind, fault.target)
            except LkChaosError:
                pass  # still in the ledger: `lkchaos recover` clears it
        if isinstance(exc, NotInEffect):
            raise
        raise ActivityFailed(f"{fault.kind} on {fault.target} not applied: {exc}") from exc


def _result(
    service: str, action: str, fault: ledger.Fault, mechanism: str, applied: Sequence[Any],
    tc: Sequence[str], **extra: Any,
) -> Dict[str, Any]:  # fmt: skip
    return {"service": service, "action": action, "fault_id": fault.id, "mechanism": mechanism,
            **extra, "rules": [str(r) for r in applied], "qdiscs": list(tc)}


def _probe(client: Any, target: Any, service: str) -> rules.Probe:
    probe = rules.parse_probe(sidecar.run(client, target, rules.PROBE_SCRIPT))
    if not probe.devices:
        raise ActivityFailed(f"{service} has no network interface but lo: nothing to shape")
    return probe


def partition(
    service: str,
    peers: List[str],
    direction: str = "both",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Cut ``service`` off from ``peers`` (other compose services, by their current container
    addresses): packets from them (``ingress``), to them (``egress``) or both are dropped, so
    connections hang rather than being refused. Adds to an earlier partition of the service.
    Rollback: ``heal_partition``."""
    _check_service(service)
    where = _checked(rules.check_direction, direction)
    _check_peers(service, peers)
    settings = Settings.load(configuration, secrets)
    service = _one(settings, service)
    peers = _peer_names(settings, service, peers)
    with _engine() as client:
        target = _running_target(client, settings, service)
        containers = runtime_containers(client, settings)
        cut: Dict[str, List[str]] = {}
        for peer in dict.fromkeys(peers):
            found = sidecar.addresses(_target(containers, settings, peer, "peer"))
            if not found:
                raise ActivityFailed(f"peer {peer} has no address (is it running?)")
            cut[peer] = found
        sidecar.ensure_image(client)
        fault = _record(settings, "partition", service, "heal_partition")
        tag = rules.comment(fault.id, "partition")
        applied = rules.partition_rules([a for f in cut.values() for a in f], where, tag)
        _apply(client, target, settings, fault, rules.apply_script(applied, []), False,
               len(applied))
    return _result(service, "partition", fault, "iptables", applied, [],
                   peers=cut, direction=where)  # fmt: skip


def media_packet_loss(
    service: str,
    percent: float,
    ports: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Lose ``percent`` % of the packets (chosen at random) to and from a LiveKit node's media
    ports: by default UDP 7882 (ICE), 3478 (TURN) and 30000-30100 (TURN relays), both ways.
    netem where the kernel has it (outgoing; incoming by iptables), iptables
    ``-m statistic --mode random`` elsewhere; ``mechanism`` says which. Replaces an earlier
    loss on the service; 0 % only removes it. Rollback: ``clear_network_faults``."""
    _check_service(service)
    pct = _checked(rules.check_percent, percent)
    port_map = _checked(rules.parse_ports, ports, rules.MEDIA_PORTS)
    settings = Settings.load(configuration, secrets)
    service = _one(settings, service)
    with _engine() as client:
        target = _running_target(client, settings, service)
        sidecar.ensure_image(client)
        probe = _probe(client, target, service)
        mechanism, reason = rules.choose_loss_mechanism(probe)
        if pct == 0:
            mechanism, reason = "none", "0 %: any earlier loss removed"
        fault = _record(settings, "loss", service, "clear_network_faults")
        tag = rules.comment(fault.id, "loss")
        applied: List[rules.Rule] = []
        tc: List[str] = []
        if mechanism == "netem":
            tc = [c for dev in probe.devices for c in rules.netem_commands(dev, pct)]
            applied = rules.classify_rules(port_map, f"{rules.LOSS_HANDLE}:4", tag)
            applied += rules.drop_rules(port_map, pct, tag, chains=("INPUT",))
        elif mechanism == "iptables":
            applied = rules.drop_rules(port_map, pct, tag)
        script = rules.apply_script(applied, tc, replace=("loss",))
        replaced = _apply(client, target, settings, fault, script, True, len(applied), tc)
        if pct == 0:
            ledger.forget(settings.state_dir, fault.kind, service)
    return _result(service, "media_packet_loss", fault, mechanism, applied, tc,
                   replaced=replaced, reason=reason, percent=pct,
                   ports=rules.describe_ports(port_map))  # fmt: skip


def limit_bandwidth(
    service: str,
    rate_kbit: int,
    ports: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Cap what ``service`` sends at ``rate_kbit`` kbit/s (tc htb on each of its interfaces):
    all of its traffic, or only the traffic to or from ``ports``. Outgoing only: to slow what
    a service receives, limit its sender. Replaces an earlier limit on the service.
    Rollback: ``clear_network_faults``."""
    _check_service(service)
    rate = _checked(rules.check_rate, rate_kbit)
    port_map = {} if ports is None else _checked(rules.parse_ports, ports, ())
    settings = Settings.load(configuration, secrets)
    service = _one(settings, service)
    with _engine() as client:
        target = _running_target(client, settings, service)
        sidecar.ensure_image(client)
        probe = _probe(client, target, service)
        why = rules.check_bandwidth_roots(probe)
        if why:
            raise ActivityFailed(f"cannot limit {service}'s bandwidth: {why}")
        fault = _record(settings, "bandwidth", service, "clear_network_faults")
        tag = rules.comment(fault.id, "bandwidth")
        tc = [c for dev in probe.devices for c in rules.htb_commands(dev, rate, bool(port_map))]
        applied = rules.classify_rules(port_map, f"{rules.BANDWIDTH_HANDLE}:2", tag)
        script = rules.apply_script(applied, tc, replace=("bandwidth",))
        replaced = _apply(client, target, settings, fault, script, True, len(applied), tc)
    return _result(service, "limit_bandwidth", fault, "tc-htb", applied, tc,
                   replaced=replaced, rate_kbit=rate, devices=probe.devices, direction="egress",
                   ports=rules.describe_ports(port_map) or "all")  # fmt: skip


def block_udp(
    service: str,
    ports: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Drop every UDP packet to or from a LiveKit node's UDP ICE and TURN ports (7882 and 3478
    by default; ``ports`` must be UDP), so clients fall back to ICE over TCP (7881) or
    TURN/TLS (443, through the TLS proxy). Replaces an earlier block. Rollback:
    ``clear_network_faults``."""
    _check_service(service)
    port_map = _checked(rules.parse_ports, ports, rules.UDP_ICE_PORTS, udp_only=True)
    settings = Settings.load(configuration, secrets)
    service = _one(settings, service)
    with _engine() as client:
        target = _running_target(client, settings, service)
        sidecar.ensure_image(client)
        fault = _record(settings, "udp-block", service, "clear_network_faults")
        applied = rules.drop_rules(port_map, 100, rules.comment(fault.id, "udp-block"))
        script = rules.apply_script(applied, [], replace=("udp-block",))
        replaced = _apply(client, target, settings, fault, script, True, len(applied))
    return _result(service, "block_udp", fault, "iptables", applied, [],
                   replaced=replaced, ports=rules.describe_ports(port_map))  # fmt: skip


def _clear(
    settings: Settings, service: str | None, kinds: Sequence[str]
) -> Dict[str, Any]:
    removed: List[Dict[str, Any]] = []
    qdiscs: List[Dict[str, Any]] = []
    skipped: List[str] = []
    ledger_kinds = {LEDGER_PREFIX + kind for kind in kinds}
    # An entry is forgotten only once its service was cleared, or when the service is not
    # running (a stopped container's network namespace, and its rules, are gone).
    gone: set[str] = set()
    recorded: List[ledger.Fault] = []
    try:
        with _engine() as client:
            recorded = [f for f in ledger.pending(settings.state_dir)
                        if f.kind in ledger_kinds and service in (None, f.target)]  # fmt: skip
            containers = runtime_containers(client, settings)
            if service is not None:
                containers = {service: _target(containers, settings, service, "service")}
            gone.update(f.target for f in recorded if f.target not in containers)
            present = sidecar.image_present(client)
            for name, container in sorted(containers.items()):
                if not _running(container):
                    skipped.append(name)
                    gone.add(name)
                    continue
                if not present:
                    if not any(f.target == name for f in recorded):
                        skipped.append(name)  # no image, no entry: nothing of ours is there
                        continue
                    sidecar.ensure_image(client)  # an entry says a fault is there: build it
                    present = True
                found = sidecar.clear(client, container, kinds)
                removed += [{"service": name, **rule} for rule in found["rules"]]
                qdiscs += [{"service": name, **qdisc} for qdisc in found["qdiscs"]]
                gone.add(name)
    finally:  # also when a later service failed: what was cleared is forgotten
        for fault in recorded:
            if fault.target in gone:
                ledger.forget(settings.state_dir, fault.kind, fault.target)
    return {"removed": removed, "qdiscs": qdiscs, "count": len(removed) + len(qdiscs),
            "skipped": skipped}  # fmt: skip


def heal_partition(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Remove every lkchaos partition rule of ``service`` (and nothing else). A rollback:
    nothing to remove is not an error. Returns ``{"removed": [{"service", "rule", "packets",
    ...}], "qdiscs": [], "count", "skipped"}``; ``packets`` counts what each rule dropped."""
    _check_service(service)
    settings = Settings.load(configuration, secrets)
    service = _one(settings, service)
    return {"service": service, **_clear(settings, service, ("partition",))}


def clear_network_faults(
    service: str = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Remove every lkchaos network rule and qdisc from ``service``, or from every running
    service of the project: the rollback of all network faults. Nothing to remove is not an
    error. Returns ``{"removed": [{"service", "table", "chain", "rule", "packets", "bytes",
    "fault_id", "kind"}], "qdiscs": [{"service", "device", "qdisc", ...}], "count",
    "skipped"}`` (``skipped``: services not running, whose rules went with them)."""
    if service is not None:
        _check_service(service)
    settings = Settings.load(configuration, secrets)
    if service is not None:
        service = _one(settings, service)
    return {"service": service, **_clear(settings, service, rules.KINDS)}
