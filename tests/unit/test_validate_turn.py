"""The TURN check: LiveKit's credentials (checked against vectors from the Go library LiveKit
uses), and allocations that relay data over UDP and TLS against a real TURN server (coturn,
Debian's ``coturn``, given LiveKit's credentials for one participant), refused with a wrong
password."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lkchaos import certs
from lkchaos.settings import Settings
from lkchaos.validate.checks import turn
from lkchaos.validate.model import Context
from tests.unit.livekit_dev import free_port

NAME = "turn.example.test"
KEY, SECRET = "APItest", "s" * 40


def test_base62_matches_the_go_library_livekit_uses() -> None:
    # Produced by github.com/jxskiss/base62 v1.1.0 EncodeToString.
    assert turn.base62(b"Hello") == "vxGblhE"
    assert turn.base62(b"APIabc|PA_x1") == "xg3XBBFfGTswSCqgA"
    assert turn.base62(b"\xff\xfe\x00\x01\x1e\x1f\x3e\x3f\x7f\x80") == "Aevf4zHeIAA8ffB"


@pytest.mark.parametrize("size", [0, 1, 2, 7, 31, 32, 33, 64])
def test_base62_round_trips(size: int) -> None:
    for data in (os.urandom(size), b"\xff" * size, b"\x00" * size):
        assert turn.unbase62(turn.base62(data)) == data


def test_credentials_are_livekits_username_and_password() -> None:
    username, password = turn.credentials(KEY, SECRET, "PA_abc", 1900000000)
    assert turn.unbase62(username) == b"APItest|PA_abc|1900000000"
    assert len(turn.unbase62(password)) == 32  # a SHA-256 digest
    assert turn.credentials(KEY, SECRET + "x", "PA_abc", 1900000000)[1] != password
    assert turn.credentials(KEY, SECRET, "PA_abc", 1900000001)[1] != password
    later = turn.unbase62(turn.credentials(KEY, SECRET, "PA_abc")[0]).decode()
    assert abs(int(later.rsplit("|", 1)[1]) - (time.time() + turn.TTL_S)) < 60


#: Seconds coturn is given to listen before it is started again on new ports: it listens
#: within 0.2 s, unless it lost a port to another process (it then keeps running, deaf).
START_S = 5.0


class Coturn:
    """coturn on 127.0.0.1 (UDP and TLS, relaying on loopback) that knows LiveKit's
    credentials of one participant, as LiveKit derives them from the key pair."""

    participant = "PA_lkchaostest"
    expiry = int(time.time()) + 3600

    def __init__(self, folder: Path, ca: certs.Issuer, user: str | None = None) -> None:
        #: ``name:password`` of a static user, as an external TURN server in LiveKit's
        #: ``rtc.turn_servers`` has, in place of LiveKit's derived credentials.
        self.user = user
        certs.write_pair(certs.make_leaf(ca, [NAME]), folder / "turn.crt", folder / "turn.key")
        # Free ports are only free when asked: a server that lost its ports to another
        # process exits, and is started again on new ones.
        for _attempt in range(3):
            if self._start(folder):
                return
        raise RuntimeError(f"coturn did not start listening (3 tries of {START_S:g} s)")

    def _start(self, folder: Path) -> bool:
        self.udp, self.tls = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        username, password = turn.credentials(KEY, SECRET, self.participant, self.expiry)
        user = self.user or f"{username}:{password}"
        relay = free_port(socket.SOCK_DGRAM)
        self.proc = subprocess.Popen(
            ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
             f"--listening-port={self.udp}", f"--tls-listening-port={self.tls}",
             f"--cert={folder / 'turn.crt'}", f"--pkey={folder / 'turn.key'}",
             "--lt-cred-mech", f"--user={user}", "--realm=livekit",
             "--allow-loopback-peers", "--no-cli", "--no-dtls", "--no-tcp-relay",
             f"--min-port={relay}", f"--max-port={relay + 20}", f"--db={folder / 'turndb'}",
             f"--pidfile={folder / 'turn.pid'}", "--log-file=stdout", "--simple-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.tls), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.1)
        self.close()
        return False

    @property
    def who(self) -> tuple[str, int]:
        """The participant and expiry of the one user coturn knows."""
        return self.participant, self.expiry

    def server(self, transport: str) -> dict[str, object]:
        return {"transport": transport, "host": "127.0.0.1", "name": NAME, "label": "coturn",
                "port": self.udp if transport == "udp" else self.tls}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def coturn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Coturn, Settings]]:
    """coturn with LiveKit's derived credentials; parametrized indirectly with
    ``"name:password"``, with that static user instead."""
    if shutil.which("turnserver") is None:
        pytest.skip("needs coturn (Debian package coturn)")
    ca = certs.make_ca()
    (tmp_path / "ca.crt").write_bytes(certs.cert_pem(ca.cert))
    server = Coturn(tmp_path, ca, user=getattr(request, "param", None))
    settings = Settings(livekit_api_key=KEY, livekit_api_secret=SECRET,
                        ca_file=str(tmp_path / "ca.crt"))  # fmt: skip
    yield server, settings
    server.close()


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_an_allocation_relays_data_and_a_wrong_password_is_refused(
        coturn: tuple[Coturn, Settings], transport: str) -> None:  # fmt: skip
    server, settings = coturn
    result = turn.exercise(settings, server.server(transport), 5.0, *server.who)
    assert "error" not in result, result
    assert result["a_to_b"] and result["b_to_a"]
    assert result["relayed"][0][0] == "127.0.0.1"
    assert result["wrong_password"].startswith("refused ("), result["wrong_password"]
    ok, text = turn.summary(result)
    assert ok, text
    assert "relayed both ways" in text and f"TURN/{transport.upper()}" in text


def test_credentials_of_another_key_pair_are_refused(coturn: tuple[Coturn, Settings]) -> None:
    server, settings = coturn
    other = Settings(livekit_api_key=KEY, livekit_api_secret="t" * 40, ca_file=settings.ca_file)
    result = turn.exercise(other, server.server("udp"), 5.0, *server.who)
    assert "401" in result["error"] or "Unauthorized" in result["error"]
    assert turn.summary(result)[0] is False


def test_tls_to_a_server_with_an_untrusted_certificate_fails(
        coturn: tuple[Coturn, Settings], tmp_path: Path) -> None:  # fmt: skip
    server, _ = coturn
    stranger = tmp_path / "stranger.crt"
    stranger.write_bytes(certs.cert_pem(certs.make_ca("another CA").cert))
    settings = Settings(livekit_api_key=KEY, livekit_api_secret=SECRET, ca_file=str(stranger))
    result = turn.exercise(settings, server.server("tls"), 5.0, *server.who)
    assert "CERTIFICATE_VERIFY_FAILED" in result["error"]
    assert result["wrong_password"].startswith("untested: ")
    assert turn.summary(result)[0] is False


@pytest.mark.parametrize("coturn", ["caller:from-livekit"], indirect=True)
def test_an_external_turn_server_is_exercised_with_the_credentials_livekit_hands_out(
        coturn: tuple[Coturn, Settings]) -> None:  # fmt: skip
    # coturn in LiveKit's rtc.turn_servers with a static user: LiveKit's join response hands
    # clients that user, and credentials derived from the API key are refused.
    server, settings = coturn
    ice = [{"urls": ["stun:stun.example.test:3478"], "username": "", "credential": ""},
           {"urls": [f"turn:{NAME}:{server.udp}?transport=udp",
                     f"turns:{NAME}:{server.tls}?transport=tcp"],
            "username": "caller", "credential": "from-livekit"}]  # fmt: skip
    for transport in ("udp", "tls"):
        result = turn.exercise(settings, server.server(transport), 5.0, ice=ice)
        ok, text = turn.summary(result)
        assert ok, text
        assert "credentials LiveKit's join response" in text
    derived = turn.exercise(settings, server.server("udp"), 5.0, ice=ice[:1])
    assert "401" in derived["error"] or "Unauthorized" in derived["error"]
    assert "derived from the API key" in turn.summary(derived)[1]


def test_the_join_responses_turn_server_of_the_transport_is_chosen() -> None:
    ice = [{"urls": ["turn:other.example.test:3478?transport=udp"], "username": "o",
            "credential": "op"},
           {"urls": ["turn:turn.example.test:3478?transport=tcp"], "username": "t",
            "credential": "tp"},
           {"urls": ["turn:turn.example.test:3478"], "username": "u", "credential": "up"},
           {"urls": ["turns:turn.example.test:443?transport=tcp"], "username": "s",
            "credential": "sp"}]  # fmt: skip
    udp = {"transport": "udp", "host": "10.0.0.3", "name": NAME, "port": 3478}
    tls = {"transport": "tls", "host": "10.0.0.3", "name": NAME, "port": 443}
    assert turn.offered(udp, ice) == ("u", "up")  # its own host first; TCP never for UDP
    assert turn.offered(tls, ice) == ("s", "sp")
    assert turn.offered(udp, ice[:1]) == ("o", "op")  # another host, when that is all
    assert turn.offered(tls, ice[:3]) is None
    assert turn.offered(udp, []) is None


def test_stun_over_tls_is_answered_by_a_turn_server(coturn: tuple[Coturn, Settings]) -> None:
    server, settings = coturn
    ok, text = turn.stun_over_tls(f"127.0.0.1:{server.tls}", NAME, settings, 5.0)
    assert ok, text
    assert "mapped 127.0.0.1:" in text


def test_the_item_is_not_applicable_without_a_turn_name() -> None:
    settings = Settings(tls_names=("lk.example.test",), livekit_url="wss://lk.example.test",
                        compose_project="mine")  # fmt: skip
    finding = turn.turn_integration(Context(settings))
    assert finding.status == "n/a"
