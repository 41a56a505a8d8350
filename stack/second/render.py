"""Write the second deployment's secrets, certificates and configs into its state folder.

Usage: ``python stack/second/render.py STATE_DIR [--net-prefix P]``.

Idempotent: the API key pair, the Redis password, the CA and the server certificate are made
once and kept (a certificate is renewed only when it has less than a week left or is no longer
signed by the CA); configs are rewritten only when their text changes. Files that hold a secret
are 0600. Layout of ``STATE_DIR``:

- ``secrets.env``: ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``, ``REDIS_PASSWORD`` (what the
  target file references);
- ``agent.env``: the API key pair only, for the agent worker and the prober;
- ``livekit/livekit.yaml``, ``livekit/keys.yaml``: LiveKit's config (Redis with AUTH) and its
  key file;
- ``redis/redis.conf``: ``requirepass``, append-only persistence;
- ``certs/<name>.crt``, ``certs/<name>.key``: what nginx serves, mounted as a folder so that a
  rotation (a file replaced by a rename) is seen, then applied by nginx on SIGHUP;
- ``certs/ca.crt``, ``certs/ca.key``: the deployment's own CA (the target's
  ``tls_proxy.ca_file``), beside the certificates it signs, where lkchaos's certificate faults
  look for it to sign a bad certificate that differs from the good one in one way only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from lkchaos import certs

SECRET_MODE = 0o600
#: The LiveKit name nginx serves (stack/second/nginx/nginx.conf and target.yaml say the same).
LIVEKIT_NAME = "rtc.voiceprod.test"
DEFAULT_NET_PREFIX = "172.29.88"
LIVEKIT_OCTET = 11


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of ``path`` (blank lines and ``#`` comments skipped); {} if absent."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    return values


def ensure_secrets(state: Path) -> dict[str, str]:
    """The key pair and the Redis password, generated on first use and kept after."""
    path = state / "secrets.env"
    values = read_env(path)
    fresh = {
        "LIVEKIT_API_KEY": "voiceprod-" + secrets.token_hex(4),
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(36),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
    }
    changed = False
    for key, value in fresh.items():
        if not values.get(key):
            values[key] = value
            changed = True
    if changed:
        body = "".join(f"{key}={values[key]}\n" for key in sorted(values))
        header = "# The voiceprod deployment's secrets. Keep them private.\n"
        certs.replace_file(path, (header + body).encode(), mode=SECRET_MODE)
    return values


def _signed_and_fresh(cert_path: Path, ca: certs.Issuer, days_left: int = 7) -> bool:
    current = certs.load_cert(cert_path)
    try:
        current.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    horizon = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_left)
    return current.not_valid_after_utc > horizon


def ensure_certificates(state: Path, names: list[str]) -> None:
    """The CA and one server certificate per name it signs, in one folder."""
    certs_dir = state / "certs"
    ca_crt, ca_key = certs_dir / certs.CA_FILE, certs_dir / certs.CA_KEY_FILE
    if ca_crt.is_file() and ca_key.is_file():
        ca = certs.load_pair(ca_crt, ca_key)
    else:
        ca = certs.make_ca("voiceprod test CA")
        certs.write_pair(ca, ca_crt, ca_key)
    for name in names:
        crt, key = certs_dir / f"{name}.crt", certs_dir / f"{name}.key"
        if crt.is_file() and key.is_file() and _signed_and_fresh(crt, ca):
            continue
        certs.write_pair(certs.make_leaf(ca, [name]), crt, key)


def livekit_yaml(redis_password: str, net_prefix: str) -> str:
    """One node; Redis by address with AUTH; keys from a key file; no TURN, no public STUN."""
    node_ip = f"{net_prefix}.{LIVEKIT_OCTET}"
    return f"""# LiveKit server: a single node. Written by stack/second/render.py.
port: 7880
log_level: info
key_file: /etc/livekit/keys.yaml
redis:
  address: redis:6379
  password: "{redis_password}"
rtc:
  tcp_port: 7881
  udp_port: 7882
  use_external_ip: false
  node_ip: {node_ip}
  # Never send a client to a public STUN server: the only one named is the node itself.
  stun_servers: ["{node_ip}:3478"]
prometheus:
  port: 6789
room:
  empty_timeout: 120
  departure_timeout: 10
"""


def redis_conf(password: str) -> str:
    return f"""# Redis: a single server with AUTH. Written by stack/second/render.py.
bind 0.0.0.0
protected-mode no
port 6379
dir /data
appendonly yes
requirepass {password}
"""


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` when it differs (always with ``mode``)."""
    if path.is_file() and path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
        return
    certs.replace_file(path, text.encode(), mode=mode)


def render(state: Path, net_prefix: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    values = ensure_secrets(state)
    key, secret = values["LIVEKIT_API_KEY"], values["LIVEKIT_API_SECRET"]
    password = values["REDIS_PASSWORD"]
    write_text(state / "agent.env",
               f"LIVEKIT_API_KEY={key}\nLIVEKIT_API_SECRET={secret}\n", SECRET_MODE)
    write_text(state / "livekit" / "keys.yaml", f"{key}: {secret}\n", SECRET_MODE)
    write_text(state / "livekit" / "livekit.yaml", livekit_yaml(password, net_prefix), SECRET_MODE)
    write_text(state / "redis" / "redis.conf", redis_conf(password), SECRET_MODE)
    ensure_certificates(state, [LIVEKIT_NAME])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--net-prefix", default=DEFAULT_NET_PREFIX)
    args = parser.parse_args(argv)
    parts = str(args.net_prefix).split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        parser.error(f"--net-prefix {args.net_prefix!r}: give the first three octets of a /24")
    render(Path(args.state_dir).resolve(), args.net_prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
