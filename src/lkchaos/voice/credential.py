"""The credential the voice prober asks of every round-trip request.

``Authorization: Bearer <token>``, the token being an HMAC-SHA256 of a fixed label keyed with
the stack's LiveKit API secret: the prober already holds the secret (it signs the caller's
join tokens), the probe reads it from the experiment's secrets or the environment, and the
secret itself never travels. Anyone who can reach the prober's port but does not know the
secret cannot make it place calls.
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "Bearer"
_LABEL = b"lkchaos voice prober v1"


def prober_token(api_secret: str) -> str:
    """The bearer token for a prober that holds ``api_secret``."""
    if not api_secret:
        raise ValueError("the prober's credential needs the LiveKit API secret")
    return hmac.new(api_secret.encode("utf-8"), _LABEL, hashlib.sha256).hexdigest()


def authorization(api_secret: str) -> str:
    """The ``Authorization`` header value for a prober that holds ``api_secret``."""
    return f"{SCHEME} {prober_token(api_secret)}"


def is_authorized(header: str | None, api_secret: str) -> bool:
    """Whether an ``Authorization`` header carries the credential (constant-time compare)."""
    if not header or not api_secret:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        return False
    return hmac.compare_digest(token.strip().encode(), prober_token(api_secret).encode())
