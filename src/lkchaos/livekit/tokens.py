"""Join tokens minted by an issuer whose clock is off, and LiveKit's own verdict on them.

A token is minted as :func:`lkchaos.livekit.client.access_token` mints it (livekit-api's
``AccessToken``), then its times are moved by the skew: ``nbf`` (and ``iat``, which
``AccessToken`` leaves out and a skewed issuer would stamp with its own clock) and ``exp``, all
by ``skew_s`` seconds, so ``skew_s > 0`` is an issuer whose clock is ahead. The token is
signed again with the same key.

LiveKit checks a token with ``github.com/golang-jwt/jwt/v5`` and a leeway of one minute
(livekit/protocol ``auth/verifier.go``: ``const tokenLeeway = time.Minute``, passed as
``jwt.WithLeeway(tokenLeeway)`` in ``APIKeyTokenVerifier.Verify``; the protocol version
livekit-server v1.13.5 builds with). jwt/v5 accepts a token when ``now + leeway >= nbf`` and
``now < exp + leeway``, and does not check ``iat`` unless asked (LiveKit does not ask). So:

- an issuer ahead by up to 60 s is tolerated; ahead by more, every token it mints is refused
  until the server's clock catches up (``token is not valid yet``);
- an issuer behind is tolerated until the token's ``exp`` plus the minute has passed on the
  server: behind by less than ``ttl + 60`` seconds (``token is expired`` beyond).

LiveKit's ``GET /rtc/validate?access_token=...`` runs the same check a join does (the API-key
middleware, then the room join grant) and answers ``200 success``, or ``401`` with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt

from lkchaos.errors import LkChaosError
from lkchaos.httpclient import shared_client
from lkchaos.livekit import client as lk
from lkchaos.settings import Settings

#: LiveKit's leeway on ``nbf`` and ``exp``, in seconds (see the module's docstring).
LEEWAY_S = 60
#: Moves larger than this are refused: a year, far past any token's life.
MAX_SKEW_S = 366 * 24 * 3600


@dataclass(frozen=True)
class Verdict:
    """What a node said of one token."""

    accepted: bool
    status: int
    reason: str


def skewed_token(settings: Settings, skew_s: float, identity: str, room: str,
                 ttl_s: int) -> str:  # fmt: skip
    """A join token for ``room`` whose ``nbf``, ``iat`` and ``exp`` are ``skew_s`` seconds
    later than now (earlier when negative), signed with the target's API secret."""
    token = lk.access_token(settings, identity, room, ttl_seconds=ttl_s)
    _key, secret = settings.require_keys()
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"],
                                        options={"verify_exp": False, "verify_nbf": False,
                                                 "verify_iat": False})
    shift = round(skew_s)
    claims["nbf"] = int(claims["nbf"]) + shift
    claims["iat"] = claims["nbf"]
    claims["exp"] = int(claims["exp"]) + shift
    return jwt.encode(claims, secret, algorithm="HS256")


def _reason(body: str, token: str) -> str:
    """LiveKit's error text without the token it quotes back (``invalid token: <jwt>,
    error: ...``)."""
    text = body.replace(token, "<token>").strip()
    found = re.search(r"error: (.*)$", text, re.S)
    return (found.group(1) if found else text).strip()[:300]


class NoVerdict(LkChaosError):
    """The node answered neither "accepted" (200) nor "refused" (401)."""


def validate(url: str, token: str, timeout: float) -> Verdict:
    """Ask the node at ``url`` (its HTTP port) whether it accepts ``token``. Only 200 and
    401 are verdicts; any other answer (a proxy's 502, a 404 from something that is not
    LiveKit) raises :class:`NoVerdict`, and a node that does not answer is an
    ``httpx.HTTPError``."""
    endpoint = lk.http_url(url).rstrip("/") + "/rtc/validate"
    response = shared_client().get(endpoint, params={"access_token": token}, timeout=timeout)
    body = response.text
    if response.status_code == 200:
        return Verdict(True, 200, body.strip()[:300])
    if response.status_code == 401:
        return Verdict(False, 401, _reason(body, token))
    raise NoVerdict(f"{endpoint} answered {response.status_code} ({_reason(body, token)[:120]}), "
                    "neither an acceptance (200) nor a refusal (401): is this a LiveKit node's "
                    "HTTP port?")
