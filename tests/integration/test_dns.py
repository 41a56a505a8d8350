"""The stack's resolver answers the test names and nothing else."""

from __future__ import annotations

import pytest

from lkchaos.dns.client import resolve
from lkchaos.settings import Settings
from lkchaos.stack.render import StackConfig


# TURN/TLS is terminated by Caddy on 443; RTMP goes to Ingress directly.
@pytest.mark.parametrize(("prefix", "service"), [("lk", "caddy"), ("whip", "caddy"),
                                                  ("turn", "caddy"), ("rtmp", "ingress")])
def test_test_names_resolve_to_the_stack(settings: Settings, prefix: str, service: str) -> None:
    answer = resolve(f"{prefix}.{settings.domain}", settings.dns_server)
    assert answer.rcode == "NOERROR"
    assert answer.addresses == (StackConfig.from_env().address(service),)


def test_unknown_name_in_the_domain_is_nxdomain(settings: Settings) -> None:
    assert resolve(f"nobody.{settings.domain}", settings.dns_server).rcode == "NXDOMAIN"


def test_names_outside_the_domain_are_refused_not_forwarded(settings: Settings) -> None:
    answer = resolve("example.com", settings.dns_server)
    assert answer.rcode == "REFUSED" and answer.addresses == ()
