"""What the network sidecar runs: iptables rules, tc qdiscs, and the shell scripts around them.

Pure functions, no Docker: the actions validate arguments with these, build a script, and hand
it to :mod:`lkchaos.network.sidecar`, which runs it in the target's network namespace.

Every iptables rule lkchaos adds carries the comment ``lkchaos:<fault id>:<kind>`` and every
qdisc it adds has one of the handles in :data:`HANDLES`, so a clear finds exactly lkchaos's
rules and qdiscs and nothing else. Kinds: ``partition``, ``loss``, ``bandwidth``,
``udp-block``. Port rules never touch the loopback interface: traffic a container sends to
itself (a LiveKit node's TURN relay to its own media port, for one) is left alone.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

COMMENT = "lkchaos"
KINDS = ("partition", "loss", "bandwidth", "udp-block")
DIRECTIONS = ("both", "ingress", "egress")
#: qdisc handles lkchaos uses, by kind. ``4c4e:`` is the netem check on ``lo``, removed at once
#: unless the sidecar died in between.
HANDLES: dict[str, tuple[str, ...]] = {"bandwidth": ("4c4b",), "loss": ("4c4c", "4c4e")}
BANDWIDTH_HANDLE = "4c4b"
LOSS_HANDLE = "4c4c"
NETEM_HANDLE = "4c4d"
CHECK_HANDLE = "4c4e"
#: A LiveKit node's UDP media: ICE (one muxed port), TURN/UDP, and TURN's relay range.
MEDIA_PORTS = ("7882/udp", "3478/udp", "30000-30100/udp")
#: What ``block_udp`` drops so that clients fall back to ICE/TCP (7881) and TURN/TLS (443 on
#: the TLS proxy, as LiveKit advertises it).
UDP_ICE_PORTS = ("7882/udp", "3478/udp")
MULTIPORT_SLOTS = 15
#: The interfaces of the namespace (``lo`` included), one per line.
_DEVICES = "ip -o link show | sed -n 's/^[0-9]*: \\([^:@ ]*\\).*/\\1/p'"


class RuleError(ValueError):
    """An argument that no rule can be built from; the message says what is accepted."""


def comment(fault_id: str, kind: str) -> str:
    if kind not in KINDS or not re.fullmatch(r"[0-9a-f]+", fault_id):
        raise RuleError(f"bad fault id {fault_id!r} or kind {kind!r}")
    return f"{COMMENT}:{fault_id}:{kind}"


def parse_ports(specs: Any, default: Sequence[str], udp_only: bool = False) -> dict[str, str]:
    """Port specs (``7882/udp``, ``30000-30100/udp``, ``8000``: TCP and UDP) to iptables
    multiport lists by protocol, e.g. ``{"udp": "7882,30000:30100"}``."""
    if specs is None:
        specs = list(default)
    if isinstance(specs, str | int) or not isinstance(specs, list | tuple) or not specs:
        raise RuleError(f"ports must be a non-empty list such as [\"7882/udp\"], not {specs!r}")
    by_proto: dict[str, list[str]] = {}
    for spec in specs:
        text = str(spec).strip().lower() if isinstance(spec, str | int) else ""
        match = re.fullmatch(r"(\d+)(?:[-:](\d+))?(?:/(tcp|udp))?", text)
        if isinstance(spec, bool) or match is None:
            raise RuleError(f"bad port {spec!r}: use PORT or LOW-HIGH, optionally /tcp or /udp")
        low, high = int(match[1]), int(match[2] or match[1])
        if not 1 <= low <= high <= 65535:
            raise RuleError(f"bad port {spec!r}: ports are 1..65535, low before high")
        protos = [match[3]] if match[3] else ["tcp", "udp"]
        if udp_only and protos != ["udp"]:
            raise RuleError(f"port {spec!r} must be UDP (write it as {low}/udp)")
        for proto in protos:
            token = str(low) if low == high else f"{low}:{high}"
            if token not in by_proto.setdefault(proto, []):
                by_proto[proto].append(token)
    for proto, tokens in by_proto.items():
        if sum(2 if ":" in t else 1 for t in tokens) > MULTIPORT_SLOTS:
            raise RuleError(f"too many {proto} ports: at most 15 (a range counts as two)")
    return {proto: ",".join(tokens) for proto, tokens in sorted(by_proto.items())}


def describe_ports(ports: dict[str, str]) -> list[str]:
    """``{"udp": "7882,30000:30100"}`` back to ``["7882/udp", "30000-30100/udp"]``."""
    return [f"{t.replace(':', '-')}/{proto}" for proto, ts in ports.items() for t in ts.split(",")]


#: The smallest loss besides 0: a probability of one in a million, which both iptables'
#: ``statistic`` match and netem resolve (below it, a rule would drop nothing).
MIN_LOSS_PERCENT = 0.0001


def check_percent(percent: Any) -> float:
    """A loss in percent: 0 (the loss removed), or from :data:`MIN_LOSS_PERCENT` to 100."""
    number = isinstance(percent, int | float) and not isinstance(percent, bool)
    if not number or not 0 <= percent <= 100:
        raise RuleError(f"percent must be a number from 0 to 100, not {percent!r}")
    if 0 < percent < MIN_LOSS_PERCENT:
        raise RuleError(f"percent must be 0 (no loss) or at least {MIN_LOSS_PERCENT:g} (one "
                        f"packet in a million), not {percent!r}")  # fmt: skip
    return float(percent)


def check_rate(rate_kbit: Any) -> int:
    whole = (isinstance(rate_kbit, int | float) and not isinstance(rate_kbit, bool)
             and math.isfinite(rate_kbit))  # fmt: skip
    if not whole or rate_kbit != int(rate_kbit) or rate_kbit <= 0:
        raise RuleError(f"rate_kbit must be a whole number of kbit/s above 0, not {rate_kbit!r}")
    return int(rate_kbit)


def check_direction(direction: Any) -> str:
    if direction not in DIRECTIONS:
        raise RuleError(f"unknown direction {direction!r}; use one of: {', '.join(DIRECTIONS)}")
    return str(direction)


def probability(percent: float) -> str:
    """``percent`` as iptables' ``--probability`` (``20`` is ``0.2``), to 10 decimals; never
    ``0`` for a loss above 0 (:func:`check_percent` refuses one too small to show)."""
    text = f"{percent / 100:.10f}".rstrip("0").rstrip(".")
    if percent > 0 and float(text) == 0:
        raise RuleError(f"percent {percent!r} is too small: at least {MIN_LOSS_PERCENT:g}")
    return text


@dataclass(frozen=True)
class Rule:
    """One iptables rule, in iptables-restore form without its table."""

    table: str
    spec: str

    def __str__(self) -> str:
        return f"{self.table} {self.spec}"


def partition_rules(addresses: Iterable[str], direction: str, tag: str) -> list[Rule]:
    rules = []
    for address in addresses:
        if direction in ("both", "ingress"):
            rules.append(Rule("filter", f"-I INPUT -s {address}/32 {_tag(tag)} -j DROP"))
        if direction in ("both", "egress"):
            rules.append(Rule("filter", f"-I OUTPUT -d {address}/32 {_tag(tag)} -j DROP"))
    return rules


def drop_rules(
    ports: dict[str, str], percent: float, tag: str, chains: Sequence[str] = ("INPUT", "OUTPUT")
) -> list[Rule]:
    """Drop ``percent`` % of the packets to or from ``ports`` (all of them at 100)."""
    chance = ""
    if percent < 100:
        chance = f"-m statistic --mode random --probability {probability(percent)} "
    rules = []
    for chain in chains:
        not_lo = "! -i lo" if chain == "INPUT" else "! -o lo"
        for proto, plist in ports.items():
            rules.append(Rule("filter", f"-I {chain} {not_lo} -p {proto} -m multiport --ports "
                                        f"{plist} {chance}{_tag(tag)} -j DROP"))
    return rules


def classify_rules(ports: dict[str, str], class_id: str, tag: str) -> list[Rule]:
    """Send outgoing packets to or from ``ports`` to a tc class (no tc filter module needed)."""
    return [Rule("mangle", f"-I POSTROUTING ! -o lo -p {proto} -m multiport --ports {plist} "
                           f"{_tag(tag)} -j CLASSIFY --set-class {class_id}")
            for proto, plist in ports.items()]  # fmt: skip


def _tag(tag: str) -> str:
    return f"-m comment --comment {tag}"


def htb_commands(device: str, rate_kbit: int, only_classified: bool) -> list[str]:
    """An htb root: class 2 at ``rate_kbit``; class 1 unlimited. Unclassified traffic goes to
    class 1 when only some ports are limited, to class 2 otherwise."""
    h = BANDWIDTH_HANDLE
    return [
        f"tc qdisc add dev {device} root handle {h}: htb default {1 if only_classified else 2}",
        f"tc class add dev {device} parent {h}: classid {h}:1 htb rate 10gbit quantum 1514",
        f"tc class add dev {device} parent {h}: classid {h}:2 htb rate {rate_kbit}kbit "
        f"ceil {rate_kbit}kbit quantum 1514",
    ]


def netem_commands(device: str, percent: float) -> list[str]:
    """A prio root whose 4th band (fed only by CLASSIFY) holds a netem loss."""
    return [
        f"tc qdisc add dev {device} root handle {LOSS_HANDLE}: prio bands 4 "
        "priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1",
        f"tc qdisc add dev {device} parent {LOSS_HANDLE}:4 handle {NETEM_HANDLE}: netem "
        f"loss {percent:g}%",
    ]


@dataclass(frozen=True)
class Probe:
    """The namespace as the sidecar saw it: each interface's root qdisc handle, and netem."""

    roots: dict[str, str] = field(default_factory=dict)
    netem: bool = False
    netem_error: str = ""

    @property
    def devices(self) -> list[str]:
        return sorted(dev for dev in self.roots if dev != "lo")


PROBE_SCRIPT = f"""\
for dev in $({_DEVICES}); do echo "dev $dev $(tc qdisc show dev "$dev" root | head -n 1)"; done
if err=$(tc qdisc add dev lo root handle {CHECK_HANDLE}: netem 2>&1); then
  tc qdisc del dev lo root; echo "netem yes"
else echo "netem no $err" | head -n 1; fi
"""


def parse_probe(output: str) -> Probe:
    roots: dict[str, str] = {}
    netem, error = False, ""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "dev":
            has_handle = len(words) > 4 and words[4].endswith(":")
            roots[words[1]] = words[4].rstrip(":") if has_handle else "0"
        elif len(words) >= 2 and words[0] == "netem":
            netem, error = words[1] == "yes", " ".join(words[2:])
    return Probe(roots, netem, error)


def choose_loss_mechanism(probe: Probe) -> tuple[str, str]:
    """("netem" or "iptables", why): netem where the kernel has it and the interfaces' roots
    are free (or an earlier lkchaos loss, which is replaced), iptables otherwise."""
    if not probe.netem:
        return "iptables", f"the kernel has no netem ({probe.netem_error or 'unknown error'})"
    taken = [f"{d} ({probe.roots[d]}:)" for d in probe.devices
             if probe.roots[d] not in ("0", LOSS_HANDLE)]  # fmt: skip
    if taken:
        return "iptables", f"another qdisc is the root of {', '.join(taken)}"
    return "netem", "the kernel has netem"


def check_bandwidth_roots(probe: Probe) -> str | None:
    """Why a bandwidth limit cannot go on these interfaces, or None."""
    for dev in probe.devices:
        handle = probe.roots[dev]
        if handle == LOSS_HANDLE:
            return f"{dev} carries an lkchaos netem loss: clear it first (clear_network_faults)"
        if handle not in ("0", BANDWIDTH_HANDLE):
            return f"{dev} has its own root qdisc ({handle}:), which lkchaos will not replace"
    return None


def _kind_pattern(kinds: Sequence[str]) -> str:
    return f'--comment "?{COMMENT}:[0-9a-f]+:({"|".join(kinds)})"?( |$)'


def clear_script(kinds: Sequence[str] = KINDS, delete: bool = True) -> str:
    """Print (``rule TABLE [pkts:bytes] -A ...`` and ``qdisc DEV ...``) then, with ``delete``,
    remove every lkchaos rule and qdisc of ``kinds``."""
    handles = "|".join(h for kind in kinds for h in HANDLES.get(kind, ()))
    script = [f"pattern={shlex.quote(_kind_pattern(kinds))}", "for table in filter mangle; do",
              '  rules=$(iptables-save -c -t "$table" 2>/dev/null | grep -E -- "$pattern")',
              '  [ -n "$rules" ] || continue',
              '  printf "%s\\n" "$rules" | sed "s/^/rule $table /"']  # fmt: skip
    if delete:
        script += ['  { echo "*$table"; printf "%s\\n" "$rules"'
                   ' | sed -e "s/^\\[[0-9]*:[0-9]*\\] //" -e "s/^-A /-D /"; echo COMMIT; }'
                   " | iptables-restore -w -n || exit 3"]
    script.append("done")
    if handles:
        script += [f"for dev in $({_DEVICES}); do",
                   f'  tc qdisc show dev "$dev" root | grep -qE "^qdisc [a-z_]+ ({handles}): " '
                   "|| continue",
                   '  tc -s qdisc show dev "$dev" | sed "s/^/qdisc $dev /"']  # fmt: skip
        if delete:
            script.append('  tc qdisc del dev "$dev" root || exit 4')
        script.append("done")
    return "\n".join(script) + "\n"


def apply_script(rules: Sequence[Rule], tc: Sequence[str], replace: Sequence[str] = ()) -> str:
    """Clear the lkchaos faults of kinds ``replace``, run ``tc`` commands, then add ``rules``
    (one iptables-restore per table: all of a table's rules or none)."""
    script = clear_script(replace) if replace else ""
    script += "".join(f"{command} || exit 5\n" for command in tc)
    for table in sorted({rule.table for rule in rules}):
        lines = [f"*{table}", *(r.spec for r in rules if r.table == table), "COMMIT"]
        script += (f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} "
                   "| iptables-restore -w -n || exit 6\n")  # fmt: skip
    return script


#: Printed between a script's changes and the listing that verifies them.
VERIFY_MARKER = "#lkchaos-verify"


def verified(script: str, kinds: Sequence[str]) -> str:
    """``script``, then a listing of every lkchaos rule and qdisc of ``kinds`` left after it,
    so one sidecar run both changes and shows the result (see :func:`split_verified`)."""
    return f"{script}echo {shlex.quote(VERIFY_MARKER)}\n{clear_script(kinds, delete=False)}"


def split_verified(output: str) -> tuple[str, str]:
    """The output of a :func:`verified` script: what the script printed, and the listing."""
    head, sep, tail = output.partition(VERIFY_MARKER + "\n")
    if not sep:
        raise RuleError("the sidecar's script ended before its verification listing")
    return head, tail


_RULE = re.compile(r"^rule (\w+) \[(\d+):(\d+)\] -A (\S+) (.*)$")
_TAG = re.compile(rf'--comment "?{COMMENT}:([0-9a-f]+):([a-z-]+)"?')
_SENT = re.compile(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+)")


def parse_cleared(output: str) -> dict[str, list[dict[str, Any]]]:
    """The rules and qdiscs a clear (or listing) printed, with their counters."""
    rules: list[dict[str, Any]] = []
    qdiscs: list[dict[str, Any]] = []
    for line in output.splitlines():
        if match := _RULE.match(line):
            table, packets, size, chain, spec = match.groups()
            tag = _TAG.search(spec)
            rules.append({"table": table, "chain": chain, "rule": f"-A {chain} {spec}",
                          "packets": int(packets), "bytes": int(size),
                          "fault_id": tag[1] if tag else "", "kind": tag[2] if tag else ""})
        elif line.startswith("qdisc "):
            _, device, rest = line.split(" ", 2)
            if rest.startswith("qdisc "):
                qdiscs.append({"device": device, "qdisc": rest[6:].strip()})
            elif (sent := _SENT.search(rest)) and qdiscs and qdiscs[-1]["device"] == device:
                qdiscs[-1].update(bytes=int(sent[1]), packets=int(sent[2]),
                                  dropped=int(sent[3]))  # fmt: skip
    return {"rules": rules, "qdiscs": qdiscs}
