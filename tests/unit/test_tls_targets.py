"""Certificate faults on targets other than the reference stack, without Docker: nginx found by
``nginx -T`` and reloaded by SIGHUP (folder and single-file bind mounts), Caddy reloaded
through its admin API, and the refusals (reload none, an unsupported proxy, a file that is not
on a bind mount, no tls_proxy role), each before anything is changed."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos import certs
from lkchaos.errors import ConfigError, StackError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.tls import actions, probes, rotation
from tests.unit.test_tls import TLSServer

NAME = "rtc.example.org"
TARGET = """livekit:
  url: wss://rtc.example.org
  nodes: [{{name: only, url: "http://127.0.0.1:7880", runtime: lk-server}}]
  api_key: {{env: LK_KEY}}
  api_secret: {{env: LK_SECRET}}
redis: {{direct: {{primary: "127.0.0.1:6379"}}}}
tls_proxy: {{kind: {kind}, address: "127.0.0.1:443", names: [rtc.example.org], {reload}}}
{extra}runtime: {{docker: {{by: name}}}}
roles: {{{roles}}}
"""
DUMP = """# configuration file /etc/nginx/nginx.conf:
http {{
    include /etc/nginx/conf.d/*.conf;
}}
# configuration file /etc/nginx/conf.d/lk.conf:
server {{
    listen 443 ssl;
    server_name {name} inside.example.org;
    ssl_certificate /etc/nginx/certs/{name}.crt;
    ssl_certificate_key /etc/nginx/certs/{name}.key;
}}
server {{
    listen 443 ssl;
    server_name inside.example.org;
    ssl_certificate /etc/nginx/certs/{name}.crt;
    ssl_certificate_key /etc/nginx/certs/{name}.key;
}}
server {{
    listen 443 ssl;
    server_name baked.example.org;
    ssl_certificate /etc/ssl/baked.crt;
    ssl_certificate_key /etc/ssl/baked.key;
}}
"""


def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str = "nginx",
           reload: str = "reload: {signal: SIGHUP}", roles: str = "tls_proxy: nginx",
           extra: str = "") -> None:  # fmt: skip
    """A one-node target (``extra``: more top-level lines, e.g. a resolver) selected through
    ``LKCHAOS_TARGET``, with a state folder of its own."""
    path = tmp_path / "target.yaml"
    path.write_text(TARGET.format(kind=kind, reload=reload, roles=roles, extra=extra))
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))


class FakeNginx:
    """An nginx container by name: `nginx -T` prints :data:`DUMP`, SIGHUP reloads the local
    TLS server."""

    labels: dict[str, str] = {}
    name = "nginx"

    def __init__(self, mounts: list[tuple[Path, str]], server: TLSServer) -> None:
        self.attrs: dict[str, Any] = {"State": {"Status": "running"}, "Mounts": [
            {"Type": "bind", "Source": str(source), "Destination": dest}
            for source, dest in mounts]}
        self.server = server
        self.calls: list[str] = []

    def reload(self) -> None:
        pass

    def exec_run(self, cmd: list[str], **kwargs: Any) -> tuple[int, tuple[bytes, bytes]]:
        self.calls.append(" ".join(cmd))
        assert cmd[-2:] == ["nginx", "-T"], cmd
        return 0, (DUMP.format(name=NAME).encode(), b"nginx: configuration file ok\n")

    def kill(self, signal: str) -> None:
        self.calls.append(f"kill {signal}")
        self.server.reload()


class FakeDocker:
    def __init__(self, container: Any) -> None:
        self.containers = self
        self.container = container

    def list(self, **kwargs: Any) -> list[Any]:
        return [self.container]

    def close(self) -> None:
        pass


@pytest.fixture
def certs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    certs.ensure_stack_certs(folder, [NAME])
    return folder


@pytest.fixture
def server(certs_dir: Path) -> Iterator[TLSServer]:
    found = TLSServer(certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key")
    yield found
    found.close()


def _conf(server: TLSServer, certs_dir: Path) -> dict[str, Any]:
    return {"tls_address": server.address, "ca_file": str(certs_dir / "ca.crt")}


def _nginx(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    monkeypatch.setattr(rotation, "docker_client", lambda: FakeDocker(fake))


def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> Any:
        raise AssertionError("Docker was reached")

    monkeypatch.setattr(rotation, "docker_client", refuse)


def test_nginx_swap_and_restore_through_a_folder_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_dir: Path, server: TLSServer
) -> None:
    target(tmp_path, monkeypatch)
    fake = FakeNginx([(certs_dir, "/etc/nginx/certs")], server)
    _nginx(monkeypatch, fake)
    conf = _conf(server, certs_dir)
    original = certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt"))
    swapped = actions.swap_certificate(name=NAME, kind="expired", configuration=conf)
    assert swapped["served_fingerprint"] == swapped["fingerprint"] != original
    assert fake.calls == [f"timeout {rotation.RELOAD_TIMEOUT_S} nginx -T", "kill SIGHUP"]
    assert probes.certificate(NAME, configuration=conf)["expired"] is True
    assert [f.target for f in ledger.pending(tmp_path / "state")] == [NAME]
    restored = actions.restore_certificate(NAME, configuration=conf)
    assert restored["served_fingerprint"] == original
    assert fake.calls[-1] == "kill SIGHUP"
    assert ledger.pending(tmp_path / "state") == []


def test_nginx_files_mounted_alone_are_rewritten_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_dir: Path, server: TLSServer
) -> None:
    target(tmp_path, monkeypatch)
    crt, key = certs_dir / f"{NAME}.crt", certs_dir / f"{NAME}.key"
    fake = FakeNginx([(crt, f"/etc/nginx/certs/{NAME}.crt"),
                      (key, f"/etc/nginx/certs/{NAME}.key")], server)
    _nginx(monkeypatch, fake)
    inodes = (crt.stat().st_ino, key.stat().st_ino)
    original_key = key.read_bytes()
    conf = _conf(server, certs_dir)
    actions.swap_certificate(name=NAME, kind="wrong_name", configuration=conf)
    assert (crt.stat().st_ino, key.stat().st_ino) == inodes  # the container still sees them
    assert key.read_bytes() != original_key
    actions.restore_certificate(NAME, configuration=conf)
    assert (crt.stat().st_ino, key.stat().st_ino) == inodes
    assert key.read_bytes() == original_key


def test_served_names_and_the_files_not_on_a_bind_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_dir: Path, server: TLSServer
) -> None:
    target(tmp_path, monkeypatch)
    fake = FakeNginx([(certs_dir, "/etc/nginx/certs")], server)
    settings = Settings.load()
    assert rotation.served_names(FakeDocker(fake), settings) == {NAME, "inside.example.org"}
    baked = rotation.served(fake, settings)["baked.example.org"]
    assert baked.site is None and "not on a bind mount" in baked.problem
    _nginx(monkeypatch, fake)
    with pytest.raises(ActivityFailed, match="baked.example.org cannot be swapped.*/etc/ssl/"
                       "baked.crt, is inside the container, not on a bind mount"):
        actions.swap_certificate(name="baked.example.org", kind="expired",
                                 configuration=_conf(server, certs_dir))
    # read three times, never reloaded
    assert fake.calls == [f"timeout {rotation.RELOAD_TIMEOUT_S} nginx -T"] * 3
    assert ledger.pending(tmp_path / "state") == []


def test_locate_through_folder_and_file_mounts(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.crt").write_text("x")
    (tmp_path / "b.crt").write_text("y")
    container = type("C", (), {"attrs": {"Mounts": [
        {"Type": "bind", "Source": str(tmp_path), "Destination": "/etc/certs"},
        {"Type": "bind", "Source": str(tmp_path / "b.crt"), "Destination": "/etc/certs/x.crt"},
        {"Type": "volume", "Source": "/var/lib/docker/v", "Destination": "/data"},
    ]}})()
    assert rotation.locate(container, "/etc/certs/sub/a.crt", "a") == (
        tmp_path / "sub" / "a.crt", False, "")
    assert rotation.locate(container, "/etc/certs/x.crt", "x") == (tmp_path / "b.crt", True, "")
    assert "not on a bind mount" in rotation.locate(container, "/data/c.crt", "c")[2]
    assert "not a file on this machine" in rotation.locate(container, "/etc/certs/no.crt", "n")[2]
    assert "not an absolute path" in rotation.locate(container, "c.crt", "c")[2]
    assert rotation.locate(None, str(tmp_path / "b.crt"), "b") == (tmp_path / "b.crt", False, "")


@pytest.mark.parametrize(
    ("kind", "reload", "roles", "message"),
    [
        ("nginx", "reload: none", "tls_proxy: nginx",
         "the target's tls_proxy has reload: none: certificates cannot be swapped"),
        ("traefik", "reload: {signal: SIGHUP}", "tls_proxy: nginx",
         "tls_proxy is traefik: lkchaos finds certificate files in Caddy's configuration "
         r"\(kind: caddy\) and nginx's \(kind: nginx\) only"),
        ("nginx", 'reload: {admin_api: "http://127.0.0.1:2019"}', "tls_proxy: nginx",
         "admin_api, which is Caddy's"),
        ("nginx", "reload: {signal: SIGHUP}", "agent_worker: agent", "maps no tls_proxy role"),
    ],
)
def test_targets_that_cannot_swap_are_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, reload: str, roles: str,
    message: str,
) -> None:
    target(tmp_path, monkeypatch, kind, reload, roles)
    _no_docker(monkeypatch)
    with pytest.raises(ActivityFailed, match=message):
        actions.swap_certificate(name=NAME, kind="expired")
    assert rotation.refusal(Settings.load()) is not None
    with pytest.raises(ConfigError, match=message):
        rotation.served_names(None, Settings.load())
    assert ledger.pending(tmp_path / "state") == []


class CaddyAdmin(http.server.BaseHTTPRequestHandler):
    """Caddy's admin API: ``GET /config/`` returns :attr:`config`; ``POST /load`` records the
    request and reloads the TLS server."""

    config: dict[str, Any] = {}
    loads: list[tuple[dict[str, str], Any]] = []
    tls: TLSServer | None = None
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = json.dumps(self.config).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        type(self).loads.append((dict(self.headers), json.loads(self.rfile.read(length))))
        if self.status == 200 and self.tls is not None:
            self.tls.reload()
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def admin(certs_dir: Path, server: TLSServer) -> Iterator[str]:
    CaddyAdmin.config = {"apps": {
        "http": {"servers": {"srv0": {"tls_connection_policies": [
            {"match": {"sni": [NAME]}, "certificate_selection": {"any_tag": ["cert0"]}}]}}},
        "tls": {"certificates": {"load_files": [
            {"certificate": str(certs_dir / f"{NAME}.crt"),
             "key": str(certs_dir / f"{NAME}.key"), "tags": ["cert0"]}]}},
    }}
    CaddyAdmin.loads, CaddyAdmin.tls, CaddyAdmin.status = [], server, 200
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CaddyAdmin)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def admin_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_dir: Path,
                 server: TLSServer, admin: str) -> tuple[dict[str, Any], str]:  # fmt: skip
    """A Caddy target reloaded through the admin API, with no container: its configuration
    and the fingerprint of the certificate it serves at first."""
    target(tmp_path, monkeypatch, "caddy", f'reload: {{admin_api: "{admin}"}}',
           "agent_worker: agent")
    _no_docker(monkeypatch)
    return _conf(server, certs_dir), certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt"))


def test_caddy_admin_api_reload_without_a_container(
    admin_target: tuple[dict[str, Any], str]
) -> None:
    conf, original = admin_target
    swapped = actions.swap_certificate(name=NAME, kind="not_yet_valid", configuration=conf)
    assert swapped["served_fingerprint"] == swapped["fingerprint"] != original
    headers, body = CaddyAdmin.loads[-1]
    assert headers["Cache-Control"] == "must-revalidate"
    assert headers["Content-Type"] == "application/json"
    assert body == CaddyAdmin.config  # the running configuration, loaded again
    assert actions.restore_certificate(NAME, configuration=conf)["served_fingerprint"] == original
    assert len(CaddyAdmin.loads) == 2


def test_a_refused_admin_api_reload_fails_the_swap_and_keeps_the_original(
    admin_target: tuple[dict[str, Any], str], certs_dir: Path
) -> None:
    conf, original = admin_target
    CaddyAdmin.status = 400
    with pytest.raises(ActivityFailed, match="refused the reload: HTTP 400.*lkchaos recover"):
        actions.swap_certificate(name=NAME, kind="expired", configuration=conf)
    settings = Settings.load(conf)
    assert rotation.kept(settings) == [NAME]  # recover puts it back
    assert certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt")) != original
    CaddyAdmin.status = 200
    assert rotation.sweep(settings)[0]["outcome"] == "original restored"
    assert rotation.kept(settings) == []
    assert certs.fingerprint(certs.load_cert(certs_dir / f"{NAME}.crt")) == original
    assert rotation.served_fingerprint(settings, NAME) == original


def test_an_unreachable_admin_api_says_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target(tmp_path, monkeypatch, "caddy", 'reload: {admin_api: "http://127.0.0.1:9"}',
           "agent_worker: agent")
    _no_docker(monkeypatch)
    with pytest.raises(ActivityFailed, match="admin API at http://127.0.0.1:9 does not answer"):
        actions.swap_certificate(name=NAME, kind="expired")


class FakeCaddy:
    """A Caddy container whose Caddyfile is not bind-mounted (read with `cat`) and whose
    image has no timeout(1)."""

    attrs: dict[str, Any] = {"State": {"Status": "running"}, "Mounts": []}

    def __init__(self, certs_dir: Path, reload_status: int = 0) -> None:
        self.attrs = {"State": {"Status": "running"}, "Mounts": [
            {"Type": "bind", "Source": str(certs_dir), "Destination": "/data/certs"}]}
        self.reload_status = reload_status
        self.calls: list[list[str]] = []

    def reload(self) -> None:
        pass

    def exec_run(self, cmd: list[str], **kwargs: Any) -> tuple[int, tuple[bytes, bytes | None]]:
        self.calls.append(cmd)
        if cmd[0] == "timeout":
            return 126, (b'OCI runtime exec failed: exec: "timeout": executable file not found '
                         b"in $PATH", None)
        if cmd[0] == "cat":
            assert cmd == ["cat", "/srv/Caddyfile"]
            return 0, (f"{NAME} {{\n\ttls /data/certs/{NAME}.crt /data/certs/{NAME}.key\n}}\n"
                       .encode(), None)
        return self.reload_status, (b"", b"reload: config is invalid" if self.reload_status
                                    else None)


def test_caddy_config_named_by_the_reload_command_is_read_in_the_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs_dir: Path
) -> None:
    target(tmp_path, monkeypatch, "caddy",
           "reload: {command: [caddy, reload, --config, /srv/Caddyfile, --force]}",
           "tls_proxy: caddy")
    fake = FakeCaddy(certs_dir)
    settings = Settings.load()
    found = rotation.served(fake, settings)
    assert found[NAME].site == rotation.Site(NAME, certs_dir / f"{NAME}.crt",
                                             certs_dir / f"{NAME}.key")
    assert fake.calls == [["timeout", str(rotation.RELOAD_TIMEOUT_S), "cat", "/srv/Caddyfile"],
                          ["cat", "/srv/Caddyfile"]]
    assert rotation.reload_proxy(fake, settings) >= 0
    assert fake.calls[-1] == ["caddy", "reload", "--config", "/srv/Caddyfile", "--force"]
    failing = FakeCaddy(certs_dir, reload_status=1)
    with pytest.raises(StackError, match="exited with status 1: reload: config is invalid"):
        rotation.reload_proxy(failing, settings)


def test_the_swap_is_signed_by_the_targets_ca_file_when_the_proxy_has_no_key(
        tmp_path: Path) -> None:  # fmt: skip
    # The CA's key kept out of the proxy's mount: beside the target's tls_proxy.ca_file.
    served = tmp_path / "proxy"
    served.mkdir()
    site = rotation.Site("rtc.example.org", served / "rtc.crt", served / "rtc.key")
    vault = tmp_path / "vault"
    vault.mkdir()
    ca = certs.make_ca("target CA")
    certs.write_pair(ca, vault / "deployment-ca.crt", vault / "deployment-ca.key")
    settings = Settings(ca_file=str(vault / "deployment-ca.crt"))
    issuer = actions._issuer(site, "expired", settings)
    assert certs.fingerprint(issuer.cert) == certs.fingerprint(ca.cert)
    with pytest.raises(ActivityFailed, match=r"cannot load the CA and its key \(tried "
                                             r".*proxy/ca.crt"):  # fmt: skip
        actions._issuer(site, "expired", Settings(ca_file=str(tmp_path / "none.crt")))
