"""Reaching Redis: AUTH, TLS, direct or through Sentinel, against real local servers.

The servers are ``redis-server`` processes started by the tests on free ports (Debian package
``redis-server``, which scripts/bootstrap.sh installs); without it these tests fail, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from lkchaos import certs
from lkchaos.errors import ConfigError, StackError
from lkchaos.redis import client
from lkchaos.settings import Settings
from tests.unit.livekit_dev import free_port

SERVER = shutil.which("redis-server")
#: Without redis-server these tests fail (never skip): scripts/bootstrap.sh installs it.
MISSING = ("redis-server is not installed: run scripts/bootstrap.sh (or apt-get install "
           "redis-server)")
needs_server = pytest.mark.usefixtures("redis_server_installed")


@pytest.fixture
def redis_server_installed() -> None:
    if SERVER is None:
        pytest.fail(MISSING)
PASSWORD = "s3cret-for-tests"


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    folder: Path


def _start(folder: Path, args: list[str], port: int, ready: Any) -> Server:
    assert SERVER is not None
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen([SERVER, *args], cwd=folder, stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            if ready():
                return Server(port, process, folder)
        except (redis.RedisError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(Server(port, process, folder))
            log_text = (folder / "server.log").read_text()
            raise RuntimeError(f"redis-server did not start: {log_text}")
        time.sleep(0.05)


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def _base(port: int) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", "."]  # fmt: skip


def _answers(port: int, password: str | None = None, **ssl: Any) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1,
                     **ssl) as r:
        return bool(r.ping())


@pytest.fixture(scope="module")
def data_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A Redis with ``requirepass`` and one key."""
    if SERVER is None:
        pytest.fail(MISSING)
    port = free_port()
    folder = tmp_path_factory.mktemp("redis-auth")
    server = _start(folder, [*_base(port), "--requirepass", PASSWORD], port,
                    lambda: _answers(port, PASSWORD))  # fmt: skip
    with redis.Redis(host="127.0.0.1", port=port, password=PASSWORD) as r:
        r.set("probe", "here")
    yield server
    _stop(server)


def _sentinel(folder: Path, master_port: int, own_password: str | None) -> Server:
    port = free_port()
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {folder}",
             f"sentinel monitor mymaster 127.0.0.1 {master_port} 1",
             f"sentinel auth-pass mymaster {PASSWORD}"]  # fmt: skip
    if own_password:
        lines.append(f"requirepass {own_password}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentinel.conf").write_text("\n".join(lines) + "\n")
    return _start(folder, [str(folder / "sentinel.conf"), "--sentinel"], port,
                  lambda: _answers(port, own_password))  # fmt: skip


@pytest.fixture(scope="module")
def sentinels(data_node: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Server, Server]]:  # fmt: skip
    """Two Sentinels watching ``data_node``: one with the same password, one with none."""
    base = tmp_path_factory.mktemp("sentinels")
    guarded = _sentinel(base / "guarded", data_node.port, PASSWORD)
    open_one = _sentinel(base / "open", data_node.port, None)
    yield guarded, open_one
    _stop(guarded)
    _stop(open_one)


def direct(port: int, password: str = PASSWORD, **extra: Any) -> Settings:
    return Settings(sentinel_addresses=(), redis_address_map={},
                    redis_primary_address=f"127.0.0.1:{port}", redis_password=password,
                    **extra)  # fmt: skip


# --- AUTH, direct -------------------------------------------------------------------------


@needs_server
def test_the_password_from_settings_opens_the_primary(data_node: Server) -> None:
    with client.primary(direct(data_node.port), decode=True) as r:
        assert r.get("probe") == "here"


@needs_server
def test_a_wrong_password_says_where_to_correct_it(data_node: Server) -> None:
    with pytest.raises(client.RedisAuthError) as caught:
        client.primary(direct(data_node.port, password="not-it"))
    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{data_node.port} refused the default user" in message
    assert "LKCHAOS_REDIS_PASSWORD" in message and "password_ref" in message
    assert "not-it" not in message
    assert isinstance(caught.value, ConfigError)


@needs_server
def test_no_password_says_one_is_wanted(data_node: Server) -> None:
    with pytest.raises(client.RedisAuthError, match="wants a password .* and none is set"):
        client.primary(direct(data_node.port, password=""))


@needs_server
def test_an_unresolved_reference_is_named(data_node: Server) -> None:
    problem = "env REDIS_PASSWORD is not set"
    settings = direct(data_node.port, password="", redis_password_problem=problem)
    with pytest.raises(client.RedisAuthError) as caught:
        client.primary(settings)
    assert problem in str(caught.value) and "Correct that reference" in str(caught.value)


# --- AUTH, through Sentinel ---------------------------------------------------------------


def through(*found: Server, password: str = PASSWORD) -> Settings:
    return Settings(sentinel_addresses=tuple(f"127.0.0.1:{s.port}" for s in found),
                    sentinel_master="mymaster", redis_address_map={},
                    redis_password=password)  # fmt: skip


@needs_server
def test_sentinels_with_and_without_a_password_both_answer(
    data_node: Server, sentinels: tuple[Server, Server]
) -> None:
    answers = client.ask_sentinels(through(*sentinels))
    assert [(a.host, a.port) for a in answers] == [("127.0.0.1", data_node.port)] * 2
    assert client.master_address(through(sentinels[1])) == ("127.0.0.1", data_node.port)
    with client.primary(through(*sentinels), decode=True) as r:
        assert r.get("probe") == "here"


@needs_server
def test_a_sentinel_refusing_the_password_is_raised_when_none_answers(
    sentinels: tuple[Server, Server]
) -> None:
    with pytest.raises(client.RedisAuthError, match=f"Sentinel at 127.0.0.1:{sentinels[0].port}"):
        client.ask_sentinels(through(sentinels[0], password="not-it"))
    # One Sentinel answering is enough: the probe counts who answered.
    assert len(client.ask_sentinels(through(*sentinels, password="not-it"))) == 1


def test_an_unreachable_sentinel_is_left_out() -> None:
    settings = Settings(sentinel_addresses=(f"127.0.0.1:{free_port()}",), redis_address_map={})
    assert client.ask_sentinels(settings, timeout=0.5) == []
    with pytest.raises(StackError, match="no Sentinel answered"):
        client.master_address(settings, timeout=0.5)


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A Redis speaking TLS only, with a certificate for 127.0.0.1 from a CA of its own."""
    if SERVER is None:
        pytest.fail(MISSING)
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = certs.make_ca("redis test CA")
    leaf = certs.make_leaf(ca, ["127.0.0.1"])
    (folder / "ca.crt").write_bytes(certs.cert_pem(ca.cert))
    certs.write_pair(leaf, folder / "redis.crt", folder / "redis.key")
    port = free_port()
    args = [*_base(0), "--tls-port", str(port), "--tls-cert-file", str(folder / "redis.crt"),
            "--tls-key-file", str(folder / "redis.key"), "--tls-ca-cert-file",
            str(folder / "ca.crt"), "--tls-auth-clients", "no", "--requirepass", PASSWORD]
    server = _start(folder, args, port, lambda: _answers(
        port, PASSWORD, ssl=True, ssl_ca_certs=str(folder / "ca.crt")))
    yield server, folder / "ca.crt"
    _stop(server)


@needs_server
def test_tls_with_the_targets_ca(tls_node: tuple[Server, Path]) -> None:
    server, ca = tls_node
    settings = direct(server.port, redis_tls=True, redis_ca_file=str(ca))
    with client.primary(settings, decode=True) as r:
        assert r.ping() is True


@needs_server
def test_tls_checks_the_certificate(tls_node: tuple[Server, Path]) -> None:
    server, ca = tls_node
    # The system's CAs do not sign this server's certificate.
    with pytest.raises(client.RedisTlsError, match="certificate verify failed") as caught:
        client.primary(direct(server.port, redis_tls=True), timeout=1)
    assert "signed by the system's CAs" in str(caught.value) and "tls.ca_file" in str(caught.value)
    # Signed by the right CA, but for 127.0.0.1, not for the name connected to.
    named = Settings(sentinel_addresses=(), redis_primary_address=f"localhost:{server.port}",
                     redis_password=PASSWORD, redis_tls=True, redis_ca_file=str(ca))
    with pytest.raises(client.RedisTlsError, match="(?i)mismatch"):
        client.primary(named, timeout=1)
    # Plain text to a TLS port: the server drops it, and says why (test_redis_tls_mismatch).
    with pytest.raises(client.RedisTlsMismatch, match="requires TLS"):
        client.primary(direct(server.port), timeout=0.5)


def test_tls_parameters_are_passed() -> None:
    access = client.Access(password="pw", tls=True, ca_file="/etc/redis/ca.crt")
    kwargs = client.connect("redis.internal", 6380, access, timeout=1.5).connection_pool \
        .connection_kwargs  # fmt: skip
    assert kwargs["password"] == "pw"
    assert kwargs["ssl_ca_certs"] == "/etc/redis/ca.crt" and kwargs["ssl_check_hostname"] is True
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["socket_timeout"] == 1.5 and kwargs["socket_connect_timeout"] == 1.5
    plain = client.connect("redis.internal", 6379).connection_pool.connection_kwargs
    assert "ssl_ca_certs" not in plain and plain["password"] is None
    assert plain["retry"].get_retries() == 0


def test_access_comes_from_settings() -> None:
    settings = Settings(redis_password="pw", redis_tls=True, redis_ca_file="ca.pem",
                        redis_password_problem="p")  # fmt: skip
    access = client.Access.of(settings)
    assert (access.password, access.tls, access.ca_file) == ("pw", True, "ca.pem")
    assert "pw" not in repr(access)


# --- direct mode ---------------------------------------------------------------------------


def test_direct_addresses_need_no_sentinel() -> None:
    settings = Settings(sentinel_addresses=(), redis_primary_address="10.0.0.21:6380",
                        redis_replica_addresses=("10.0.0.22", "10.0.0.23:7000"))  # fmt: skip
    assert client.is_direct(settings) is True
    assert client.master_address(settings) == ("10.0.0.21", 6380)
    assert client.replicas(settings) == [("10.0.0.22", 6379), ("10.0.0.23", 7000)]
    assert client.is_direct(Settings()) is False


def test_no_redis_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"redis\.sentinel .* or redis\.direct"):
        client.is_direct(Settings(sentinel_addresses=(), redis_primary_address=""))
