"""What the tests that run a real LiveKit server on loopback share: its binary (built by
`lkchaos stack build`), a key pair it accepts, and free ports."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import yaml

from lkchaos.stack import layout
from lkchaos.stack.build import cache_dir

LIVEKIT_BIN = cache_dir() / "bin" / f"livekit-server-{layout.LIVEKIT_VERSION}"
KEY = "lkchaos-test"
SECRET = "a-test-secret-long-enough-for-livekit-0123456789"
T = TypeVar("T")


#: Where :func:`free_port` looks: below the kernel's ephemeral range (32768-60999 on Linux),
#: from which every bind to port 0 and every outgoing connection takes its port, and below the
#: ports the reference stack and the second deployment publish (7443, then 17880 and up). A
#: number handed out here is never another test's listener on port 0 nor a connection's
#: source port, so no test waiting for its own server on it reaches someone else's.
PORTS = range(10000, 17000)
_handed = itertools.count()


def worker_ports() -> range:
    """This test process's share of :data:`PORTS`: one slice per pytest-xdist worker (gwN of
    PYTEST_XDIST_WORKER_COUNT), all of it without workers, so that two workers never hand out
    the same number."""
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % count if worker[2:].isdigit() else 0
    size = len(PORTS) // count
    return range(PORTS.start + index * size, PORTS.start + (index + 1) * size)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of :func:`worker_ports` free on every address of this machine now (TCP by
    default; ``socket.SOCK_DGRAM`` for UDP), never the one handed out just before. Every
    address, not only 127.0.0.1: LiveKit's UDP port listens on each of the machine's
    addresses. Free only when asked: see :data:`PORT_TAKEN`."""
    ports = worker_ports()
    for _ in range(len(ports)):
        port = ports[next(_handed) % len(ports)]
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}: what holds them all?")


#: What a server logs when a port it was given was taken in the meantime: it is started
#: again on new ports (:func:`start_on_free_ports`).
PORT_TAKEN = "address already in use"
STARTS = 3


def start_on_free_ports(launch: Callable[[list[subprocess.Popen[bytes]]], T],
                        ) -> tuple[T, list[subprocess.Popen[bytes]]]:  # fmt: skip
    """``launch(started)``'s result and the processes it started (appended to ``started``).

    ``launch`` chooses its ports (:func:`free_port`), starts its servers and waits for them,
    raising RuntimeError with their logs' end when one does not come up. When that says a
    port was taken (:data:`PORT_TAKEN`), what it started is stopped and it runs again, on new
    ports, up to :data:`STARTS` times in all; any other failure is raised at once.
    """
    for attempt in range(1, STARTS + 1):
        started: list[subprocess.Popen[bytes]] = []
        try:
            return launch(started), started
        except RuntimeError as exc:
            for process in reversed(started):
                stop_process(process)
            if attempt == STARTS or PORT_TAKEN not in str(exc):
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def dev_server(folder: Path, extra_config: str = "",
               keys: dict[str, str] | None = None) -> Iterator[str]:
    """A livekit-server in ``--dev`` mode on loopback ports, with :data:`KEY` (or ``keys``);
    its HTTP URL.

    Skips the test when the binary is absent (``lkchaos stack build`` builds it); ends the
    server on exit. ``extra_config`` is appended to its YAML configuration.
    """
    if not os.access(LIVEKIT_BIN, os.X_OK):
        pytest.skip(f"no livekit-server binary at {LIVEKIT_BIN}: `lkchaos stack build` builds it")

    def launch(started: list[subprocess.Popen[bytes]]) -> str:
        port = free_port()
        config = (f"port: {port}\nbind_addresses: [\"127.0.0.1\"]\n"
                  f"rtc:\n  tcp_port: {free_port()}\n  udp_port: {free_port(socket.SOCK_DGRAM)}\n"
                  "  use_external_ip: false\n  node_ip: 127.0.0.1\n"
                  "keys:\n" + "".join(f"  {k}: {v}\n" for k, v in (keys or {KEY: SECRET}).items())
                  + extra_config)  # fmt: skip
        (folder / "livekit.yaml").write_text(config)
        url = f"http://127.0.0.1:{port}"
        with (folder / "server.log").open("wb") as log:
            started.append(subprocess.Popen(
                [str(LIVEKIT_BIN), "--dev", "--config", "livekit.yaml"], cwd=folder,
                stdout=log, stderr=log))  # fmt: skip
        wait_serving(url, started, folder / "server.log")
        return url

    url, started = start_on_free_ports(launch)
    try:
        yield url
    finally:
        for process in started:
            stop_process(process)


def redis_server() -> str:
    """The path of ``redis-server``; skips the test when it is not installed."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("no redis-server on PATH: apt-get install redis-server")
    return found


def start_redis(folder: Path, started: list[subprocess.Popen[bytes]],
                name: str = "redis") -> int:  # fmt: skip
    """A redis-server without persistence on a free loopback port (appended to ``started``,
    its log ``<name>.log`` in ``folder``), once it accepts connections; its port."""
    port = free_port()
    with (folder / f"{name}.log").open("wb") as log:
        started.append(subprocess.Popen(
            [redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], cwd=folder, stdout=log, stderr=log))  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return port
        if started[-1].poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start: "
                               f"{(folder / f'{name}.log').read_text()[-2000:]}")  # fmt: skip
        time.sleep(0.05)


def start_node(folder: Path, started: list[subprocess.Popen[bytes]], redis_port: int,
               name: str = "livekit") -> str:  # fmt: skip
    """A livekit-server (not ``--dev``) with :data:`KEY` on loopback ports, its state in the
    Redis at ``redis_port`` (appended to ``started``, its configuration and log
    ``<name>.yaml``/``<name>.log`` in ``folder``), once it serves; its HTTP URL."""
    if not os.access(LIVEKIT_BIN, os.X_OK):
        pytest.skip(f"no livekit-server binary at {LIVEKIT_BIN}: `lkchaos stack build` builds it")
    port = free_port()
    config = {
        "port": port, "bind_addresses": ["127.0.0.1"],
        "rtc": {"tcp_port": free_port(), "udp_port": free_port(socket.SOCK_DGRAM),
                "use_external_ip": False, "node_ip": "127.0.0.1"},
        "redis": {"address": f"127.0.0.1:{redis_port}"}, "keys": {KEY: SECRET},
    }  # fmt: skip
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    with (folder / f"{name}.log").open("wb") as log:
        started.append(subprocess.Popen([str(LIVEKIT_BIN), "--config", f"{name}.yaml"],
                                        cwd=folder, stdout=log, stderr=log))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_serving(url, started[-1:], folder / f"{name}.log")
    return url


def wait_serving(url: str, processes: list[subprocess.Popen[bytes]], log: Path,
                 timeout_s: float = 20.0) -> None:  # fmt: skip
    """Return once ``url`` + ``/`` answers 200; RuntimeError with the log's end when one of
    ``processes`` exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise RuntimeError(f"the servers did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """End a server a test started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
