"""Publish test audio and video to a WHIP endpoint with aiortc, from this machine.

aiortc (``pip install 'lkchaos[ingress]'``) is imported only when a session starts. Its
event loop runs in a thread of its own, so the probe (synchronous, and calling LiveKit's API
with ``asyncio.run``) drives it: :meth:`WhipPush.start` sends the offer (audio: Opus silence,
video: VP8 test frames) and sets the answer; :meth:`WhipPush.stop` deletes the WHIP resource
and closes the peer connection. The offer carries every ICE candidate (no trickle), as
LiveKit Ingress expects.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

T = TypeVar("T")

#: Why a WHIP publish is refused without aiortc, and what to do.
NEEDED = ("publishing through WHIP needs aiortc on the machine lkchaos runs on: pip install "
          "'/path/to/lkchaos[ingress]' (or pip install aiortc)")  # fmt: skip


class WhipError(Exception):
    """The WHIP endpoint refused the offer, or could not be reached. ``status`` is the HTTP
    status it answered with (``None`` when it did not answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def aiortc_missing() -> bool:
    """Whether aiortc cannot be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("aiortc") is None
    except (ImportError, ValueError):
        return True


def _verify(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


class WhipPush:
    """One WHIP publishing session. Always call :meth:`stop` (it is safe to call twice)."""

    def __init__(self, endpoint: str, ca_file: str = "", timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.resource = ""
        self._http = httpx.Client(verify=_verify(ca_file), timeout=httpx.Timeout(timeout))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="lkchaos-whip")  # fmt: skip
        self._thread.start()
        self._pc: Any = None
        self._stopped = False

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    async def _offer(self) -> str:
        from aiortc import (
            AudioStreamTrack,
            RTCConfiguration,
            RTCPeerConnection,
            VideoStreamTrack,
        )

        # No ICE servers: host candidates only, nothing is asked of a public STUN server.
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        self._pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return str(self._pc.localDescription.sdp)

    async def _answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def start(self) -> None:
        """Offer, POST it to the endpoint, set the answer. Raises :class:`WhipError`."""
        offer = self._run(self._offer())
        try:
            response = self._http.post(self.endpoint, content=offer.encode(),
                                       headers={"Content-Type": "application/sdp"})  # fmt: skip
        except httpx.HTTPError as exc:
            raise WhipError(f"POST {self.endpoint}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in (200, 201):
            raise WhipError(f"POST {self.endpoint} answered {response.status_code}: "
                            f"{response.text.strip()[:300] or '(no body)'}",
                            response.status_code)  # fmt: skip
        location = response.headers.get("Location", "")
        self.resource = urljoin(self.endpoint, location) if location else ""
        self._run(self._answer(response.text))

    def connection_state(self) -> str:
        """The peer connection's state: ``new``, ``connecting``, ``connected``, ``failed``..."""
        return str(self._pc.connectionState) if self._pc is not None else "new"

    def stop(self) -> None:
        """DELETE the WHIP resource (best effort), close the connection, end the thread."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.resource:
                try:
                    self._http.delete(self.resource)
                except httpx.HTTPError:
                    pass  # the ingress itself is deleted next; that ends the session too
            if self._pc is not None:
                try:
                    self._run(self._pc.close())
                except (TimeoutError, RuntimeError):
                    pass
        finally:
            self._http.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout)
            if not self._thread.is_alive():
                self._loop.close()
