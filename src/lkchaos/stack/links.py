"""The reference stack's Toxiproxy links as they run, against the configuration rendered for
them (``toxiproxy.json``), and putting them back.

Toxiproxy reads its configuration file once, when it starts; after that its proxies live in
its memory, changed through its API by anyone. A link pointed elsewhere by hand (an agent's
link to one LiveKit node instead of the load balancer), disabled, or left with a toxic that
no run recorded would survive `lkchaos stack up`, and every experiment after it would judge a
deployment that is not the reference one. ``stack up`` compares and, unless an experiment is
running, puts back what differs and nothing else: a link missing or pointed elsewhere is
created again (its connections cut: they went elsewhere), a disabled one enabled, a toxic
removed. A link as configured keeps its connections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lkchaos.settings import AddressError, split_host_port
from lkchaos.toxiproxy.client import ToxiproxyClient


def rendered(config_dir: Path) -> list[dict[str, Any]]:
    """The proxies of the rendered ``toxiproxy.json``."""
    proxies: list[dict[str, Any]] = json.loads((config_dir / "toxiproxy.json").read_text())
    return proxies


def _port(address: str) -> int | None:
    try:
        return split_host_port(address, None)[1]
    except AddressError:
        return None


#: Differences that need the link made again (its connections cut: they went elsewhere).
READDRESSED = frozenset({"missing", "upstream", "listen"})


def _differences(proxy: Mapping[str, Any], running: Mapping[str, Any] | None
                 ) -> list[tuple[str, str]]:  # fmt: skip
    """How one running link differs from ``proxy``: ``(kind, what)`` pairs, kinds
    ``missing``, ``upstream``, ``listen`` (by port: Toxiproxy shows ``0.0.0.0`` as
    ``[::]``), ``disabled``, ``toxics``."""
    name = str(proxy["name"])
    if running is None:
        return [("missing", f"{name}: missing")]
    found: list[tuple[str, str]] = []
    if running.get("upstream") != proxy["upstream"]:
        found.append(("upstream", f"{name}: upstream {running.get('upstream')}, rendered "
                                  f"{proxy['upstream']}"))  # fmt: skip
    if _port(str(running.get("listen", ""))) != _port(str(proxy["listen"])):
        found.append(("listen", f"{name}: listens on {running.get('listen')}, rendered "
                                f"{proxy['listen']}"))  # fmt: skip
    if not running.get("enabled", True):
        found.append(("disabled", f"{name}: disabled"))
    toxics = [str(t.get("name")) for t in running.get("toxics") or []]
    if toxics:
        found.append(("toxics", f"{name}: toxics {', '.join(sorted(toxics))}"))
    return found


def drift(wanted: Sequence[Mapping[str, Any]],
          live: Mapping[str, Mapping[str, Any]]) -> list[str]:  # fmt: skip
    """How the running proxies differ from ``wanted``, one line each (empty: none)."""
    return [what for proxy in wanted
            for _, what in _differences(proxy, live.get(str(proxy["name"])))]


def restore(toxi: ToxiproxyClient, wanted: Sequence[Mapping[str, Any]]) -> None:
    """Put the proxies back as ``wanted``, touching only what differs (see the module
    docstring). Toxiproxy recreates a proxy populated with another ``listen`` text than its
    own (it shows ``0.0.0.0`` as ``[::]``), so only those missing or with another address are
    populated."""
    live = toxi.proxies()
    recreate = [dict(proxy) for proxy in wanted
                if any(kind in READDRESSED
                       for kind, _ in _differences(proxy, live.get(str(proxy["name"]))))]
    if recreate:
        toxi.populate(recreate)
    live = toxi.proxies()
    for proxy in wanted:
        running = live.get(str(proxy["name"])) or {}
        for toxic in running.get("toxics") or []:
            toxi.remove_toxic_if_present(str(proxy["name"]), str(toxic.get("name")))
        if not running.get("enabled", True):
            toxi.set_enabled(str(proxy["name"]), True)
