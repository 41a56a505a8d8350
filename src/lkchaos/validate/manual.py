"""What a person must confirm for the items no program checks here.

:func:`instruction` gives one short line for an item: its own instruction when it has one,
else its group's (the id's first part: ``docs``, ``signoff-business``), else a general one.
The runner shows it as the ``manual`` item's evidence; the HTML sign-off sheet puts it beside
a checkbox and a blank.
"""

from __future__ import annotations

from lkchaos.validate.model import Item

#: Instructions for one item, by id.
BY_ID: dict[str, str] = {
    "infra.network-connectivity-validated":
        "from a network outside the deployment's, connect to each public name and port",
    "infra.load-balancer-cdn":
        "if a load balancer or CDN fronts the deployment, confirm it forwards WebSocket "
        "upgrades and does not cache the API",
    "infra.backup-strategy-place":
        "name where backups go, how often, and who restores them",
    "infra.domain-ownership-verified":
        "confirm the domain's registrar account and DNS zone are held by the organisation",
    "infra.certificate-authority-access":
        "confirm the ACME account or CA credentials are stored and usable by operations",
    "infra.automatic-renewal-mechanism":
        "force one renewal (or check the proxy's renewal log) and note the date",
    "infra.certificate-backup-procedures":
        "confirm certificates and keys are in the backup and who can restore them",
    "startup.external-connectivity-validated":
        "from outside the deployment's network, join a room through the public URL",
    "startup.network-policy-blocking":
        "review firewall and network policies between the services; note any rule that drops",
    "startup.service-discovery-working":
        "confirm every service finds the others by the names its configuration uses",
    "startup.database-connections-established":
        "confirm every service that uses Redis shows a connection in its logs or metrics",
}

#: Instructions for every item of a group (the id's first part), unless it has its own.
BY_GROUP: dict[str, str] = {
    "infra": "confirm on the deployment's hosts and write what you saw",
    "startup": "confirm in the deployment's logs and write what you saw",
    "tls": "confirm with a TLS scanner against every public name",
    "livekit": "confirm with a client joining a room through the public URL",
    "redis": "confirm with redis-cli against the deployment's Redis",
    "caddy": "confirm in the proxy's configuration and access logs",
    "ingress-egress": "confirm by publishing a stream and recording a room",
    "auth": "confirm with tokens crafted for the case, against the public URL",
    "vuln": "attach the scan or review report and name who reviewed it",
    "load": "attach the load test's report (tool, load, duration, results)",
    "monitoring": "confirm in the monitoring system and attach a screenshot or link",
    "dr": "attach the drill's record: date, what failed, time to recover",
    "docs": "link the document and confirm it was reviewed in the last release",
    "ops": "name the procedure, when it was last exercised, and by whom",
    "compliance": "attach the reviewer's note and the policy it was checked against",
    "signoff-technical": "the named team signs and dates below",
    "signoff-business": "the named role signs and dates below",
    "final": "the release owner confirms before approval",
    "first-24h": "confirm after the first day in production (`lkchaos validate --watch 24h`)",
    "first-week": "confirm after the first week (trends, capacity, documentation)",
    "first-month": "confirm after the first month (baseline, lessons learned)",
}

GENERAL = "a person confirms this item and writes what they saw"


def instruction(item: Item) -> str:
    """The line a person acts on for ``item``: its own, its group's, else the general one."""
    return BY_ID.get(item.id) or BY_GROUP.get(group_id(item.id)) or GENERAL


def group_id(item_id: str) -> str:
    """The group prefix of an id: ``tls`` of ``tls.certificates-not-expiring``."""
    return item_id.split(".", 1)[0]
