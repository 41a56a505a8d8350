"""Swap the certificate the TLS proxy serves for a name, and put the original back, as a
rotation would.

The proxy is the target's ``tls_proxy`` role, reached through the target's runtime. Which file
serves which name comes from the proxy itself, as its kind (``settings.tls_proxy_kind``) says:

- ``caddy``: its configuration's ``tls <cert> <key>`` lines (the Caddyfile named by the
  reload command's ``--config``, else ``/etc/caddy/Caddyfile``, read through its bind mount
  or ``cat`` in the container), or with an admin API, the running JSON configuration's
  certificate files (:mod:`lkchaos.tls.caddy`);
- ``nginx``: ``nginx -T`` run in its container (:mod:`lkchaos.tls.nginx`);
- any other kind is refused, saying what is supported.

The files are paths inside the container; they are replaced here, on this machine, through
the container's bind mounts (a file that is not on one cannot be swapped, and is reported so):
a mounted folder's files each in one step (a temporary file and a rename), a file mounted on
its own in place (a rename would leave the container on the old file). With an admin API and
no ``tls_proxy`` role, the paths are taken as this machine's (Caddy runs here). The proxy then
reloads as ``settings.tls_reload`` says: ``{"command": argv}`` run in its container,
``{"signal": NAME}`` sent to it (nginx: ``SIGHUP``), ``{"admin_api": URL}`` (Caddy's
``POST /load`` of its running configuration), ``{}``: certificates cannot be swapped.

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

from chaoslib.exceptions import ActivityFailed

from lkchaos import certs, roles
from lkchaos.docker.client import container_state, docker_client, runtime_container
from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings
from lkchaos.tls import caddy, nginx
from lkchaos.tls.client import handshake

#: The reference stack's Caddy service (kept for callers that still name it).
CADDY_SERVICE = "caddy"
DEFAULT_CADDYFILE = "/etc/caddy/Caddyfile"
#: The TLS proxies whose certificate files lkchaos can find.
SUPPORTED_KINDS = ("caddy", "nginx")
#: Seconds a command in the proxy's container may run: less than the Docker client's own
#: timeout (``lkchaos.docker.client.DOCKER_TIMEOUT``), so the command stops before the call
#: gives up on it.
RELOAD_TIMEOUT_S = 8
#: How long to wait for the proxy to serve the new certificate after a reload.
SERVE_WAIT_S = 5.0
RELOAD_NONE = "the target's tls_proxy has reload: none: certificates cannot be swapped"


@dataclass(frozen=True)
class Site:
    """Where the proxy's certificate for one name lives on this machine; ``in_place``: the
    files are bind-mounted one by one, so they are rewritten, never replaced."""

    name: str
    cert: Path
    key: Path
    in_place: bool = False


@dataclass(frozen=True)
class Served:
    """One name the proxy serves from a file: where its files are here (``site``), or why
    they cannot be swapped (``problem``)."""

    name: str
    site: Site | None
    problem: str = ""


@contextmanager
def docker() -> Iterator[Any]:
    client = docker_client()
    try:
        yield client
    finally:
        client.close()


def refusal(settings: Settings) -> str | None:
    """Why no certificate of this target can be swapped, or None."""
    how, kind = settings.tls_reload, settings.tls_proxy_kind
    if not how:
        return RELOAD_NONE
    if kind not in SUPPORTED_KINDS:
        return (f"the target's tls_proxy is {kind}: lkchaos finds certificate files in Caddy's "
                "configuration (kind: caddy) and nginx's (kind: nginx) only")  # fmt: skip
    if "admin_api" in how and kind != "caddy":
        return (f"the target's tls_proxy is {kind} but reloads through admin_api, which is "
                "Caddy's: use reload {signal: SIGHUP} for nginx")  # fmt: skip
    if "admin_api" not in how and not settings.roles.get("tls_proxy"):
        return ("the target maps no tls_proxy role: add `roles: {tls_proxy: NAME}` (its "
                "container) to the target file")  # fmt: skip
    return None


def _check(settings: Settings) -> None:
    reason = refusal(settings)
    if reason is not None:
        raise ConfigError(reason)


def proxy_container(client: Any, settings: Settings) -> Any | None:
    """The TLS proxy's container (None: Caddy reached by its admin API only)."""
    if not settings.roles.get("tls_proxy") and "admin_api" in settings.tls_reload:
        return None
    try:
        name = roles.resolve_one(settings, "tls_proxy", "the TLS proxy")
    except ActivityFailed as exc:
        raise ConfigError(str(exc)) from exc
    return runtime_container(client, settings, name)


@contextmanager
def proxy(settings: Settings) -> Iterator[Any | None]:
    """The TLS proxy's container, with the Docker client open only while it is used."""
    _check(settings)
    if not settings.roles.get("tls_proxy") and "admin_api" in settings.tls_reload:
        yield None
        return
    with docker() as client:
        yield proxy_container(client, settings)


def mounts(container: Any) -> dict[str, Path]:
    """A container's bind mounts: destination inside -> source on this machine."""
    return {
        str(m.get("Destination")): Path(str(m.get("Source")))
        for m in container.attrs.get("Mounts") or []
        if m.get("Type") == "bind"
    }


def run_in(container: Any, argv: list[str], timeout_s: int = RELOAD_TIMEOUT_S) -> tuple[int, str]:
    """Run ``argv`` in the container under ``timeout`` (plainly if the image has none);
    the exit status and the output (stdout, then stderr)."""
    def once(command: list[str]) -> tuple[int, str]:
        code, output = container.exec_run(command, demux=True)
        out, err = output if isinstance(output, tuple) else (output, b"")
        text = b"".join(part for part in (out, err) if isinstance(part, bytes))
        return int(code or 0), text.decode(errors="replace")

    code, text = once(["timeout", str(timeout_s), *argv])
    if code in (126, 127) and '"timeout"' in text:  # no timeout(1) in the image
        code, text = once(list(argv))
    return code, text


def locate(container: Any | None, inside: str, what: str) -> tuple[Path | None, bool, str]:
    """Where the container's file ``inside`` is on this machine: (path, in place, problem)."""
    if not inside.startswith("/"):
        return None, False, f"{what} is {inside!r}, not an absolute path"
    if container is None:
        path = Path(inside)
        return (path, False, "") if path.is_file() else (
            None, False, f"{what}, {inside}, is not a file on this machine")  # fmt: skip
    target = PurePosixPath(inside)
    found: tuple[PurePosixPath, Path] | None = None
    for dest, source in mounts(container).items():
        mount = PurePosixPath(dest)
        if (target == mount or mount in target.parents) and (
                found is None or len(mount.parts) > len(found[0].parts)):  # fmt: skip
            found = (mount, source)
    if found is None:
        return None, False, (f"{what}, {inside}, is inside the container, not on a bind mount: "
                             "lkchaos replaces certificate files on this machine, so bind-mount "
                             "their folder from it")  # fmt: skip
    mount, source = found
    path = source if target == mount else source.joinpath(*target.relative_to(mount).parts)
    if not path.is_file():
        return None, False, (f"{what}, {inside}, is bind-mounted from {path}, which is not a "
                             "file on this machine: run lkchaos on the Docker host")  # fmt: skip
    return path, target == mount, ""


def _read_in(container: Any, inside: str) -> str:
    path, _, problem = locate(container, inside, "the configuration")
    if path is not None:
        return path.read_text()
    code, text = run_in(container, ["cat", inside])
    if code != 0:
        raise ConfigError(f"cannot read {inside} in the TLS proxy's container ({problem}; "
                          f"cat: {text.strip()[:200]})")  # fmt: skip
    return text


def _caddy_config(settings: Settings) -> str:
    command = list(settings.tls_reload.get("command") or ())
    if "--config" in command[:-1]:
        return str(command[command.index("--config") + 1])
    return DEFAULT_CADDYFILE


def _files(container: Any | None, settings: Settings) -> dict[str, tuple[str, str, str]]:
    """Name -> (cert, key, problem), inside the proxy, as its configuration says."""
    if settings.tls_proxy_kind == "nginx":
        if container is None:
            raise ConfigError("nginx is read through `nginx -T` in its container: set "
                              "roles.tls_proxy")  # fmt: skip
        code, text = run_in(container, ["nginx", "-T"])
        if code != 0:
            raise StackError(f"`nginx -T` in the TLS proxy's container exited with status "
                             f"{code}: {text.strip()[-300:]}")  # fmt: skip
        return {name: (s.cert, s.key, s.problem) for name, s in nginx.parse_dump(text).items()}
    if "admin_api" in settings.tls_reload:
        config = caddy.admin_config(str(settings.tls_reload["admin_api"]))
        return {n: (c, k, "") for n, (c, k) in caddy.config_files(config).items()}
    if container is None:
        raise ConfigError("Caddy's configuration is read in its container: set roles.tls_proxy")
    mapping = caddy.read_config(_read_in(container, _caddy_config(settings)))
    return {n: (c, k, "") for n, (c, k) in mapping.items()}


def served(container: Any | None, settings: Settings) -> dict[str, Served]:
    """Every name the proxy serves from a certificate file, and whether it can be swapped."""
    _check(settings)
    found: dict[str, Served] = {}
    for name, (cert_in, key_in, problem) in _files(container, settings).items():
        if problem:
            found[name] = Served(name, None, problem)
            continue
        cert, cert_alone, cert_problem = locate(container, cert_in, f"the certificate of {name}")
        key, key_alone, key_problem = locate(container, key_in, f"the key of {name}")
        if cert is None or key is None:
            found[name] = Served(name, None, cert_problem or key_problem)
        else:
            found[name] = Served(name, Site(name, cert, key, cert_alone or key_alone))
    return found


def served_names(client: Any, settings: Settings) -> set[str]:
    """The names whose certificate files lkchaos can swap on this target (ConfigError when
    it can swap none, saying why)."""
    _check(settings)
    container = proxy_container(client, settings)
    return {name for name, found in served(container, settings).items() if found.site}


def caddy_sites(container: Any) -> dict[str, Site]:
    """Every name the reference stack's Caddy serves from a file it bind-mounts."""
    text = _read_in(container, DEFAULT_CADDYFILE)
    found: dict[str, Site] = {}
    for name, (cert_in, key_in) in caddy.parse_caddyfile(text).items():
        cert, alone, _ = locate(container, cert_in, name)
        key, key_alone, _ = locate(container, key_in, name)
        if cert is not None and key is not None:
            found[name] = Site(name, cert, key, alone or key_alone)
    return found


def parse_caddyfile(text: str) -> dict[str, tuple[str, str]]:
    """See :func:`lkchaos.tls.caddy.parse_caddyfile`."""
    return caddy.parse_caddyfile(text)


def reload_proxy(container: Any | None, settings: Settings) -> float:
    """Have the proxy load its certificates again, as ``tls_reload`` says; the seconds it took.
    Graceful for Caddy and nginx: listeners stay open and requests in flight finish."""
    how = settings.tls_reload
    if container is not None and container_state(container)["state"] != "running":
        raise StackError("the TLS proxy is not running: it cannot reload")
    start = time.monotonic()
    if "admin_api" in how:
        caddy.admin_reload(str(how["admin_api"]))
    elif container is None:
        raise ConfigError("reloading by command or signal needs roles.tls_proxy")
    elif "command" in how:
        argv = [str(part) for part in how["command"]]
        code, text = run_in(container, argv)
        if code != 0:
            raise StackError(f"`{' '.join(argv)}` in the TLS proxy exited with status {code}: "
                             f"{text.strip()[-300:]}")  # fmt: skip
    elif "signal" in how:
        container.kill(signal=str(how["signal"]))
    else:
        raise ConfigError(RELOAD_NONE)
    return time.monotonic() - start


def write_pair(site: Site, pair: certs.Issuer) -> None:
    """Put ``pair`` where the proxy reads ``site``'s files from."""
    _replace(site.key, certs.key_pem(pair.key), site.in_place, certs.KEY_MODE)
    _replace(site.cert, certs.cert_pem(pair.cert), site.in_place, 0o644)


def _replace(path: Path, data: bytes, in_place: bool, mode: int) -> None:
    if not in_place:
        certs.replace_file(path, data, mode=mode)
        return
    with path.open("r+b") as handle:  # same inode: a file mounted alone stays mounted
        handle.write(data)
        handle.truncate()


def served_fingerprint(settings: Settings, name: str, timeout: float = 2.0) -> str | None:
    """The fingerprint of the certificate served for ``name`` at ``tls_address``, or None."""
    result = handshake(settings.tls_address, name, timeout=timeout)
    if result.der is None:
        return None
    from cryptography import x509

    return certs.fingerprint(x509.load_der_x509_certificate(result.der))


#: Consecutive handshakes that must all get the new certificate: a proxy reloaded gracefully
#: (nginx on SIGHUP) lets its old workers finish, and one of them may still answer a new
#: connection with the old certificate for a moment.
SERVED_IN_A_ROW = 5


def wait_served(settings: Settings, name: str, fingerprint: str, wait_s: float) -> str | None:
    """Poll until ``fingerprint`` is served for ``name`` on :data:`SERVED_IN_A_ROW` handshakes
    in a row (or ``wait_s`` passed); the last seen (None: no handshake got a certificate,
    e.g. while the proxy is unreachable)."""
    deadline = time.monotonic() + wait_s
    in_a_row = 0
    while True:
        seen = served_fingerprint(settings, name)
        in_a_row = in_a_row + 1 if seen == fingerprint else 0
        if in_a_row >= SERVED_IN_A_ROW:
            return seen
        if time.monotonic() >= deadline:
            # Seen now but not yet steadily: say what else was served.
            return seen if seen != fingerprint else f"{fingerprint} (not on every handshake)"
        time.sleep(0.1)


def originals_dir(settings: Settings) -> Path:
    return Path(settings.run_dir) / "originals" / "tls"


def kept(settings: Settings) -> list[str]:
    """Names whose original certificate is kept aside (a swap is in place)."""
    folder = originals_dir(settings)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def keep_original(settings: Settings, site: Site) -> str:
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
            "in_place": site.in_place, "fingerprint": fingerprint}  # fmt: skip
    certs.replace_file(meta_path, (json.dumps(meta, indent=2) + "\n").encode(), mode=0o600)
    return fingerprint


def put_back(settings: Settings, name: str) -> dict[str, Any] | None:
    """Write the kept original of ``name`` back where it was; None if none is kept. The kept
    copy is removed only by :func:`forget_original`, after the proxy has reloaded."""
    folder = originals_dir(settings)
    meta_path = folder / f"{name}.json"
    if not meta_path.is_file():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    in_place = bool(meta.get("in_place", False))
    _replace(Path(meta["key"]), (folder / f"{name}.key").read_bytes(), in_place, certs.KEY_MODE)
    _replace(Path(meta["cert"]), (folder / f"{name}.crt").read_bytes(), in_place, 0o644)
    return meta


def forget_original(settings: Settings, name: str) -> None:
    folder = originals_dir(settings)
    for suffix in (".crt", ".key", ".json"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)


def restore(settings: Settings, name: str) -> dict[str, Any]:
    """Put the original of ``name`` back and reload the proxy (if it runs); say what was done."""
    meta = put_back(settings, name)
    if meta is None:
        return {"name": name, "restored": False, "fingerprint": None, "reloaded": False,
                "reload_s": None, "served_fingerprint": None}  # fmt: skip
    with proxy(settings) as container:
        running = container is None or container_state(container)["state"] == "running"
        reload_s = reload_proxy(container, settings) if running else None
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
