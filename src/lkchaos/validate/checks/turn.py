"""TURN: an allocation with the deployment's credentials that relays data, over UDP and TLS.

LiveKit's embedded TURN server (``pkg/service/turn.go``, v1.13) takes long-term credentials
(realm ``livekit``) derived from an API key pair and an expiry: the username is
``base62("<api key>|<participant id>|<expiry>")`` and the password
``base62(sha256("<api secret>|<participant id>|<expiry>"))``, the expiry in Unix seconds
(an allocation is refused after it), base62 being ``github.com/jxskiss/base62``'s encoding
(:func:`base62`). Any participant id works: the server only checks that the password matches
the key's secret. These are the credentials LiveKit hands its clients in the join response.

The check takes its credentials from that join response (a participant joins a node's
signalling, :func:`lkchaos.validate.checks.livekit.ice_servers`), as a client does: a TURN
server LiveKit does not run (coturn in ``rtc.turn_servers``, with its own users) is then
exercised with what LiveKit tells clients to use. Only where the join offers no TURN server
of a transport are the credentials derived from the API key as above.

Relaying is proved with two allocations on the same server: A sends to B's relayed address
and B's client receives the data through the server, and back. No third machine is needed,
and it works behind NAT. A wrong password must be refused (401).

The TURN client is aioice's (which aiortc brings: ``pip install 'lkchaos[ingress]'``).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lkchaos.settings import AddressError, Settings, split_host_port
from lkchaos.tls import sockets
from lkchaos.validate.checks import network
from lkchaos.validate.model import Context, Finding, Status, check

REALM = "livekit"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TURN_UDP_PORT = 3478
#: How long the credentials the check makes are valid (LiveKit's own default TTL).
TTL_S = 300


def base62(data: bytes) -> str:
    """``github.com/jxskiss/base62`` StdEncoding: 6 bits a digit from the end of ``data``,
    5 bits where the 6 would make 30-31 or 62-63."""
    out, pos = [], len(data) * 8
    if not data:
        return ""
    while True:
        start = pos - 6
        if start <= 0:
            start, index, offset, size = 0, 0, 0, pos
        else:
            index, offset = start // 8, start % 8
            size = min(6, (index + 1) * 8 - start)
        value = (data[index] >> (8 - offset - size)) & ((1 << size) - 1)
        if size < 6 and start > 0:
            rest = 6 - size
            value = (value << rest) | (data[index + 1] >> (8 - rest))
        if value & 0x1E == 0x1E:
            if start > 0 or value > 0x1F:
                start += 1
            value &= 0x1F
        out.append(_ALPHABET[value])
        pos = start
        if pos <= 0:
            return "".join(out)


def unbase62(text: str) -> bytes:
    """The inverse of :func:`base62`."""
    out = bytearray()
    bits = acc = 0
    for i, char in enumerate(text):
        value = _ALPHABET.index(char)
        acc |= value << bits
        if i == len(text) - 1:
            bits += value.bit_length()
        else:
            bits += 5 if value & 0x1E == 0x1E else 6
        if bits >= 8:
            out.append(acc & 0xFF)
            bits %= 8
            acc >>= 8
    if bits > 0:
        out.append(acc & 0xFF)
    return bytes(reversed(out))


def credentials(api_key: str, api_secret: str, participant: str,
                expiry: int | None = None) -> tuple[str, str]:  # fmt: skip
    """LiveKit's TURN username and password for ``participant`` under the key pair, valid
    until ``expiry`` (Unix seconds; by default in :data:`TTL_S` seconds)."""
    expiry = int(time.time()) + TTL_S if expiry is None else expiry
    username = base62(f"{api_key}|{participant}|{expiry}".encode())
    password = base62(hashlib.sha256(f"{api_secret}|{participant}|{expiry}".encode()).digest())
    return username, password


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client context trusting the target's CA (``ca_file``), else the system's."""
    ctx = ssl.create_default_context(cafile=settings.ca_file or None)
    return ctx


def stun_over_tls(address: str, name: str, settings: Settings,
                  timeout: float) -> tuple[bool, str]:  # fmt: skip
    """A STUN binding over TLS to ``address`` as ``name``: whether a TURN/STUN server
    answered (what a TURN name must reach), and what happened."""
    host, port = Settings.split_address(address, 443)
    request, txid = network.stun_request()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with sockets.wrap(tls_context(settings), raw, server_hostname=name) as tls:
                tls.sendall(request)
                data = b""
                while len(data) < 20 or len(data) < 20 + int.from_bytes(data[2:4], "big"):
                    chunk = tls.recv(2048)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError) as exc:
        return False, f"STUN over TLS as {name}: {type(exc).__name__}: {exc}"
    mapped = network.stun_mapped(data, txid)
    if mapped:
        return True, f"STUN over TLS as {name} answered (mapped {mapped})"
    return False, f"STUN over TLS as {name}: no STUN answer (got {data[:40]!r})"


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


Opener = Callable[[], Awaitable[tuple[Any, _Receiver]]]


def _opener(server: tuple[str, int], username: str, password: str, transport: str,
            name: str | None, ctx: ssl.SSLContext | None) -> Opener:  # fmt: skip
    """A coroutine factory opening one allocation; over TLS with ``name`` as SNI, which
    aioice's own ``create_turn_endpoint`` cannot set when it connects to an address."""
    from aioice import turn as aioturn

    async def open_udp() -> tuple[Any, _Receiver]:
        return await aioturn.create_turn_endpoint(_Receiver, server, username, password,
                                                  lifetime=60)  # fmt: skip

    async def open_tls() -> tuple[Any, _Receiver]:
        loop = asyncio.get_running_loop()
        inner_transport, inner = await loop.create_connection(
            lambda: aioturn.TurnClientTcpProtocol(server, username=username, password=password,
                                                  lifetime=60, channel_refresh_time=50),
            host=server[0], port=server[1], ssl=ctx, server_hostname=name)
        receiver = _Receiver()
        relay = aioturn.TurnTransport(inner)
        try:
            await relay._connect(receiver)  # the allocation, as create_turn_endpoint does
        except BaseException:
            inner_transport.close()
            raise
        return relay, receiver

    return open_tls if transport == "tls" else open_udp


async def _relay(open_one: Opener, timeout: float) -> dict[str, Any]:
    """Two allocations; data from A to B's relayed address and back must arrive."""
    a, ra = await asyncio.wait_for(open_one(), timeout)
    try:
        b, rb = await asyncio.wait_for(open_one(), timeout)
    except BaseException:
        a.close()
        raise
    try:
        relay_a, relay_b = a.get_extra_info("sockname"), b.get_extra_info("sockname")
        ping, pong = b"lkchaos-ping-" + secrets.token_bytes(4), b"lkchaos-pong"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not (any(d == ping for d, _ in rb.received)
                                               and any(d == pong for d, _ in ra.received)):
            b.sendto(pong, relay_a)  # B's permission for A, and B -> A
            a.sendto(ping, relay_b)
            await asyncio.sleep(0.2)
        errors = [str(e) for e in ra.errors + rb.errors]
        return {"relayed": [list(relay_a), list(relay_b)],
                "mapped": list(a.get_extra_info("related_address") or ()),
                "a_to_b": any(d == ping for d, _ in rb.received),
                "b_to_a": any(d == pong for d, _ in ra.received), "errors": errors[:3]}
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0.1)  # let the deletes go out


class _Channel:
    """One blocking STUN channel to a TURN server: UDP, or TLS as ``name``."""

    def __init__(self, server: tuple[str, int], transport: str, name: str | None,
                 ctx: ssl.SSLContext | None, timeout: float) -> None:  # fmt: skip
        self.server, self.tls = server, transport == "tls"
        if self.tls:
            raw = socket.create_connection(server, timeout=timeout)
            assert ctx is not None
            self.sock: socket.socket = sockets.wrap(ctx, raw, server_hostname=name)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(timeout)

    def ask(self, message: Any) -> Any:
        """Send ``message``; the first STUN message answering its transaction."""
        from aioice import stun

        data = bytes(message)
        if self.tls:
            self.sock.sendall(data)
            reply = b""
            while len(reply) < 20 or len(reply) < 20 + int.from_bytes(reply[2:4], "big"):
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the TURN server closed the connection")
                reply += chunk
        else:
            self.sock.sendto(data, self.server)
            reply = self.sock.recv(4096)
        answer = stun.parse_message(reply)
        if answer.transaction_id != message.transaction_id:
            raise ConnectionError("the TURN server answered another transaction")
        return answer

    def close(self) -> None:
        self.sock.close()


def refusal(server: tuple[str, int], transport: str, name: str | None,
            ctx: ssl.SSLContext | None, username: str, password: str,
            timeout: float) -> str:  # fmt: skip
    """An Allocate with ``password``, read as the server answers it (a client library
    discards an error that carries no integrity, which is how a server answers a wrong
    password): ``refused (N)``, ``accepted: ...`` or ``untested: why``."""
    from aioice import stun
    from aioice.turn import make_integrity_key

    def allocate() -> Any:
        message = stun.Message(message_method=stun.Method.ALLOCATE,
                               message_class=stun.Class.REQUEST)  # fmt: skip
        message.attributes["REQUESTED-TRANSPORT"] = 0x11000000  # UDP
        message.attributes["LIFETIME"] = 60
        return message

    try:
        channel = _Channel(server, transport, name, ctx, timeout)
    except OSError as exc:
        return f"untested: {type(exc).__name__}: {exc}"
    try:
        challenge = channel.ask(allocate())
        if challenge.error_code != 401 or "NONCE" not in challenge.attributes:
            return f"untested: no authentication challenge ({challenge.error_code})"
        request = allocate()
        realm = challenge.attributes.get("REALM", REALM)
        request.attributes.update({"USERNAME": username, "REALM": realm,
                                   "NONCE": challenge.attributes["NONCE"]})  # fmt: skip
        request.add_message_integrity(make_integrity_key(username, realm, password))
        request.add_fingerprint()
        answer = channel.ask(request)
    except (OSError, ValueError) as exc:
        return f"untested: {type(exc).__name__}: {exc}"
    finally:
        channel.close()
    if answer.message_class == stun.Class.ERROR:
        return f"refused ({answer.error_code})"
    return f"accepted: allocated {answer.attributes.get('XOR-RELAYED-ADDRESS')}"


def turn_servers(settings: Settings) -> list[dict[str, Any]]:
    """Where TURN is: UDP on each TURN/UDP endpoint of the port map, TLS on the TURN name."""
    mapped = network.port_map(settings)
    servers: list[dict[str, Any]] = []
    for child, transport in (("port-3478", "udp"), ("port-5349", "tls")):
        where = mapped[child]
        if isinstance(where, str):
            continue
        for endpoint in where:
            servers.append({"transport": transport, "host": endpoint.host, "port": endpoint.port,
                            "name": endpoint.name, "label": endpoint.label})  # fmt: skip
    return servers


def offered(server: dict[str, Any], ice: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The username and password LiveKit's join response gives for a TURN server of
    ``server``'s transport (``turn:`` URLs with UDP for ``udp``, ``turns:`` for ``tls``),
    preferring one whose host is the server's; None when it offers none."""
    scheme = "turns" if server["transport"] == "tls" else "turn"
    matches: list[tuple[bool, str, str]] = []
    for entry in ice:
        for url in entry.get("urls") or []:
            head, _, rest = str(url).partition(":")
            try:
                host = split_host_port(rest.split("?", 1)[0], TURN_UDP_PORT)[0]
            except AddressError:
                continue
            transport = rest.partition("transport=")[2].lower() or "udp"
            if head.lower() != scheme or (scheme == "turn" and transport != "udp"):
                continue
            if entry.get("username") and entry.get("credential"):
                mine = host in (server.get("name"), server.get("host"))
                matches.append((mine, str(entry["username"]), str(entry["credential"])))
    if not matches:
        return None
    _, username, password = sorted(matches, key=lambda m: not m[0])[0]
    return username, password


def exercise(settings: Settings, server: dict[str, Any], timeout: float,
             participant: str | None = None, expiry: int | None = None,
             ice: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Allocate and relay, then try a wrong password. The credentials are those LiveKit's
    join response hands clients for a TURN server of this transport (``ice``, see
    :func:`offered`: an external TURN server's too, such as coturn in ``rtc.turn_servers``),
    else derived from the API key as LiveKit's embedded TURN server takes them (for
    ``participant``, by default a new id, and ``expiry``); ``"credentials"`` says which."""
    given = offered(server, ice or [])
    if given is not None:
        (username, password), source = given, "LiveKit's join response"
    else:
        key, secret = settings.require_keys()
        participant = participant or "PA_lkchaos" + secrets.token_hex(4)
        username, password = credentials(key, secret, participant, expiry)
        source = "derived from the API key (LiveKit's embedded TURN)"
    host = socket.gethostbyname(server["host"])
    ctx = tls_context(settings) if server["transport"] == "tls" else None
    good = _opener((host, server["port"]), username, password, server["transport"],
                   server["name"], ctx)  # fmt: skip
    async def run() -> dict[str, Any]:
        result: dict[str, Any] = {**server, "credentials": source}
        try:
            result.update(await _relay(good, timeout))
        except Exception as exc:  # the allocation itself failed: that is the finding
            result["error"] = f"{type(exc).__name__}: {exc}"
        return result

    result = asyncio.run(run())
    result["wrong_password"] = refusal((host, server["port"]), server["transport"],
                                       server["name"], ctx, username, password + "x", timeout)
    return result


def summary(result: dict[str, Any]) -> tuple[bool, str]:
    where = f"TURN/{result['transport'].upper()} {result['label'] or result['host']}"
    if "error" in result:
        return False, (f"{where}: allocation failed: {result['error']} (credentials "
                       f"{result.get('credentials', 'derived')})")
    ok = result["a_to_b"] and result["b_to_a"] and result["wrong_password"].startswith("refused")
    relayed = ", ".join(f"{host}:{port}" for host, port in result["relayed"])
    moved = "relayed both ways" if result["a_to_b"] and result["b_to_a"] else "NOT relayed"
    text = (f"{where}: relays {relayed}; data {moved}; wrong password "
            f"{result['wrong_password']}; credentials {result.get('credentials', 'derived')}")
    return ok, text


def turn_results(ctx: Context) -> list[dict[str, Any]]:
    """Every TURN server's exercise, once per run."""
    def compute() -> list[dict[str, Any]]:
        try:
            import aioice.turn  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("the TURN checks need aioice: pip install 'lkchaos[ingress]'"
                               ) from exc  # fmt: skip
        from lkchaos.validate.checks import livekit

        timeout = min(max(ctx.timeout_s / 4, 3.0), 8.0)
        ice = livekit.ice_servers(ctx)
        return [exercise(ctx.settings, server, timeout, ice=ice)
                for server in turn_servers(ctx.settings)]  # fmt: skip

    results: list[dict[str, Any]] = ctx.fact("turn.exercise", compute)
    return results


@check("ingress-egress.turn-integration")
def turn_integration(ctx: Context) -> Finding:
    if not turn_servers(ctx.settings):
        return Finding("n/a", "the target has no TURN name (tls_proxy.names)")
    results = turn_results(ctx)
    lines = [summary(r) for r in results]
    transports = {r["transport"] for r in results}
    status: Status = "pass" if all(ok for ok, _ in lines) else "fail"
    if status == "pass" and transports != {"udp", "tls"}:
        status = "warn"
    return Finding(status, "; ".join(text for _, text in lines), {"servers": results})
