"""Caddy serves each SNI name with a certificate chained to the stack's CA, and proxies
LiveKit's WebSocket signalling through ``lk.<domain>``."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import uuid

import pytest
from cryptography import x509

from lkchaos.livekit.client import access_token
from lkchaos.settings import Settings


def _tls(settings: Settings, address: str, name: str) -> ssl.SSLSocket:
    host, port = Settings.split_address(address, 443)
    ctx = ssl.create_default_context(cafile=settings.ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection((host, port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=name)


@pytest.mark.parametrize("prefix", ["lk", "whip"])
def test_caddy_serves_a_certificate_per_name_chained_to_the_stack_ca(
    settings: Settings, prefix: str
) -> None:
    name = f"{prefix}.{settings.domain}"
    with _tls(settings, settings.tls_address, name) as tls:  # verification is on: chain + name
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]


def test_turn_tls_certificate_is_chained_to_the_stack_ca(settings: Settings) -> None:
    name = f"turn.{settings.domain}"
    # TURN/TLS is terminated by Caddy on 443, SNI-routed to LiveKit's TURN (external_tls).
    with _tls(settings, settings.tls_address, name) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_an_unknown_name_gets_no_certificate(settings: Settings) -> None:
    with pytest.raises(ssl.SSLError):
        _tls(settings, settings.tls_address, f"nobody.{settings.domain}").close()


def test_websocket_upgrade_to_livekit_through_caddy(settings: Settings) -> None:
    name = f"lk.{settings.domain}"
    token = access_token(settings, "it-ws", f"it-ws-{uuid.uuid4().hex[:8]}")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /rtc?access_token={token}&protocol=15&sdk=python HTTP/1.1\r\n"
        f"Host: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with _tls(settings, settings.tls_address, name) as tls:
        tls.sendall(request.encode())
        head = tls.recv(4096).decode(errors="replace")
    status = head.split("\r\n", 1)[0]
    assert status.startswith("HTTP/1.1 101"), head
    assert "upgrade: websocket" in head.lower()


def test_hsts_on_the_https_path(settings: Settings) -> None:
    import httpx

    name = f"lk.{settings.domain}"
    host, port = Settings.split_address(settings.tls_address, 443)
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=settings.ca_file))
    with httpx.Client(transport=transport, timeout=5) as http:
        # Connect to the published port while presenting the real name (SNI and Host).
        response = http.get(
            f"https://{host}:{port}/", headers={"Host": name},
            extensions={"sni_hostname": name},
        )
    assert response.status_code == 200 and response.text.strip() == "OK"
    assert "max-age=31536000" in response.headers.get("strict-transport-security", "")
