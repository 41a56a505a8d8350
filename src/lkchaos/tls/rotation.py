"""Swap the certificate Caddy serves for a name, and put the original back, as a rotation would.

Where the files are comes from the Caddy container itself: its bind mount of ``/certs`` (the
folder on this machine) and of its Caddyfile, whose ``tls <cert> <key>`` lines tell which
file serves which name. The folder is mounted read-only into the container, but its files are
replaced here, on the host, each in one step (a temporary file and a rename), and Caddy is
then told to reload (``caddy reload --force`` in the container, through Docker's exec): a
graceful reload that keeps its listeners, as a real certificate rotation does.

Before the first swap of a name its original files are kept aside, with their fingerprint, in
``<state folder>/originals/tls/``; :func:`restore` puts exactly those bytes back and forgets
them, so swapping twice and restoring once still brings back the original.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lkchaos import certs
from lkchaos.docker.client import container_state, service_container
from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings
from lkchaos.stack.compose import docker_client
from lkchaos.tls.client import handshake

CADDY_SERVICE = "caddy"
CERTS_MOUNT = "/certs"
DEFAULT_CADDYFILE = "/etc/caddy/Caddyfile"
RELOAD_TIMEOUT_S = 10
#: How long to wait for Caddy to serve the new certificate after a reload.
SERVE_WAIT_S = 5.0


@dataclass(frozen=True)
class CaddySite:
    """Where Caddy's certificate for one name lives on this machine."""

    name: str
    cert: Path
    key: Path


@contextmanager
def docker() -> Iterator[Any]:
    client = docker_client()
    try:
        yield client
    finally:
        client.close()


def mounts(container: Any) -> dict[str, Path]:
    """A container's bind mounts: destination inside -> source on this machine."""
    return {
        str(m.get("Destination")): Path(str(m.get("Source")))
        for m in container.attrs.get("Mounts") or []
        if m.get("Type") == "bind"
    }


def parse_caddyfile(text: str) -> dict[str, tuple[str, str]]:
    """The names of each site block with a ``tls <cert> <key>`` line: name -> (cert, key).

    Site addresses may carry a scheme or a port (``https://lk.chaos.test:443``); several
    addresses of one block share its files.
    """
    sites: dict[str, tuple[str, str]] = {}
    depth = 0
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0 and line.endswith("{"):
            addresses = line[:-1].replace(",", " ").split()
            current = [a.split("://")[-1].rsplit(":", 1)[0] for a in addresses]
        elif depth == 1 and line.startswith("tls "):
            args = line.split()
            if len(args) >= 3 and not args[1].startswith("{"):
                for name in current:
                    if name and not name.startswith(("(", ":")):
                        sites[name] = (args[1], args[2])
        depth += line.count("{") - line.count("}")
        if depth == 0:
            current = []
    return sites


def caddy_sites(container: Any) -> dict[str, CaddySite]:
    """Every name Caddy serves from a certificate file, with the files' paths here."""
    bound = mounts(container)
    certs_dir = bound.get(CERTS_MOUNT)
    caddyfile = bound.get(DEFAULT_CADDYFILE)
    if certs_dir is None or caddyfile is None:
        raise ConfigError(
            f"the {CADDY_SERVICE} container does not bind-mount {CERTS_MOUNT} and "
            f"{DEFAULT_CADDYFILE}: lkchaos cannot tell where its certificates are"
        )
    if not caddyfile.is_file() or not certs_dir.is_dir():
        raise ConfigError(
            f"{caddyfile} or {certs_dir} is not on this machine: run lkchaos on the Docker host"
        )
    found: dict[str, CaddySite] = {}
    for name, (cert, key) in parse_caddyfile(caddyfile.read_text()).items():
        cert_in, key_in = PurePosixPath(cert), PurePosixPath(key)
        if cert_in.parent == PurePosixPath(CERTS_MOUNT) == key_in.parent:
            found[name] = CaddySite(name, certs_dir / cert_in.name, certs_dir / key_in.name)
    return found


def reload_caddy(container: Any) -> float:
    """``caddy reload --force`` inside the container; returns how long it took (s).

    The reload is graceful: listeners stay open and requests in flight finish; Caddy closes
    proxied WebSocket connections of the old configuration, as any reload does.
    """
    if container_state(container)["state"] != "running":
        raise StackError(f"{CADDY_SERVICE} is not running: it cannot reload")
    config = DEFAULT_CADDYFILE
    start = time.monotonic()
    code, output = container.exec_run(
        ["timeout", str(RELOAD_TIMEOUT_S), "caddy", "reload", "--config", config,
         "--adapter", "caddyfile", "--force"],
    )  # fmt: skip
    if code != 0:
        text = output.decode(errors="replace").strip() if isinstance(output, bytes) else output
        raise StackError(f"`caddy reload` exited with status {code}: {text}")
    return time.monotonic() - start


def served_fingerprint(settings: Settings, name: str, timeout: float = 2.0) -> str | None:
    """The fingerprint of the certificate served for ``name`` at ``tls_address``, or None."""
    result = handshake(settings.tls_address, name, timeout=timeout)
    if result.der is None:
        return None
    from cryptography import x509

    return certs.fingerprint(x509.load_der_x509_certificate(result.der))


def wait_served(settings: Settings, name: str, fingerprint: str, wait_s: float) -> str | None:
    """Poll until ``fingerprint`` is served for ``name`` (or ``wait_s`` passed); the last seen
    (None: no handshake got a certificate, e.g. while the proxy is unreachable)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = served_fingerprint(settings, name)
        if seen == fingerprint or time.monotonic() >= deadline:
            return seen
        time.sleep(0.1)


def originals_dir(settings: Settings) -> Path:
    return Path(settings.state_dir) / "originals" / "tls"


def kept(settings: Settings) -> list[str]:
    """Names whose original certificate is kept aside (a swap is in place)."""
    folder = originals_dir(settings)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def keep_original(settings: Settings, site: CaddySite) -> str:
    """Keep the files serving ``site`` aside, once; returns the original's fingerprint."""
    folder = originals_dir(settings)
    meta_path = folder / f"{site.name}.json"
    if meta_path.is_file():
        return str(json.loads(meta_path.read_text())["fingerprint"])
    cert_bytes, key_bytes = site.cert.read_bytes(), site.key.read_bytes()
    fingerprint = certs.fingerprint(certs.load_cert(site.cert))
    certs.replace_file(folder / f"{site.name}.crt", cert_bytes)
    certs.replace_file(folder / f"{site.name}.key", key_bytes, mode=0o600)
    meta = {"name": site.name, "cert": str(site.cert), "key": str(site.key),
            "fingerprint": fingerprint}  # fmt: skip
    certs.replace_file(meta_path, (json.dumps(meta, indent=2) + "\n").encode(), mode=0o600)
    return fingerprint


def put_back(settings: Settings, name: str) -> dict[str, Any] | None:
    """Write the kept original of ``name`` back where it was; None if none is kept. The kept
    copy is removed only by :func:`forget_original`, after Caddy has reloaded."""
    folder = originals_dir(settings)
    meta_path = folder / f"{name}.json"
    if not meta_path.is_file():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    key_bytes = (folder / f"{name}.key").read_bytes()
    certs.replace_file(Path(meta["key"]), key_bytes, mode=certs.KEY_MODE)
    certs.replace_file(Path(meta["cert"]), (folder / f"{name}.crt").read_bytes())
    return meta


def forget_original(settings: Settings, name: str) -> None:
    folder = originals_dir(settings)
    for suffix in (".crt", ".key", ".json"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)


def restore(settings: Settings, name: str) -> dict[str, Any]:
    """Put the original of ``name`` back and reload Caddy (if it runs); say what was done."""
    meta = put_back(settings, name)
    if meta is None:
        return {"name": name, "restored": False, "fingerprint": None, "reloaded": False,
                "reload_s": None, "served_fingerprint": None}  # fmt: skip
    with docker() as client:
        container = service_container(client, settings.compose_project, CADDY_SERVICE)
        running = container_state(container)["state"] == "running"
        reload_s = reload_caddy(container) if running else None
    forget_original(settings, name)
    served = wait_served(settings, name, meta["fingerprint"], SERVE_WAIT_S) if running else None
    return {"name": name, "restored": True, "fingerprint": meta["fingerprint"],
            "reloaded": running, "reload_s": None if reload_s is None else round(reload_s, 3),
            "served_fingerprint": served}  # fmt: skip


def sweep(settings: Settings) -> list[dict[str, Any]]:
    """Restore every certificate still swapped (for ``lkchaos recover``)."""
    done = []
    for name in kept(settings):
        try:
            restore(settings, name)
        except OSError as exc:
            raise StackError(f"cannot restore the certificate of {name}: {exc}") from exc
        done.append({"fault": f"certificate of {name} swapped",
                     "outcome": "original restored"})
    return done
