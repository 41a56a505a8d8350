"""LiveKit's IngressService and RoomService, as the ingress probes use them.

Every call goes to the first LiveKit node (of ``livekit_node_urls``) that answers: the
ingress API is served by every node (requests reach the Ingress service through Redis), so
a node that is down, as in a node-loss experiment, costs a retry, not the probe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from livekit import api

from lkchaos.livekit import client as lk
from lkchaos.settings import Settings

T = TypeVar("T")

#: What a node that cannot serve a request raises (the next node is tried).
API_ERRORS = (api.TwirpError, aiohttp.ClientError, OSError, TimeoutError)

KINDS = {"rtmp": api.IngressInput.RTMP_INPUT, "whip": api.IngressInput.WHIP_INPUT}


class IngressApiError(Exception):
    """No node could serve an IngressService or RoomService request."""


@dataclass(frozen=True)
class Created:
    """An ingress as CreateIngress returned it."""

    ingress_id: str
    url: str
    stream_key: str
    node: str


@dataclass
class Seen:
    """The ingress participant as RoomService lists it."""

    present: bool = False
    kinds: set[str] = field(default_factory=set)
    tracks: list[dict[str, object]] = field(default_factory=list)


def first_answer(
    settings: Settings,
    fn: Callable[[api.LiveKitAPI], Awaitable[T]],
    timeout: float,
    urls: Sequence[str] = (),
) -> tuple[T, str]:
    """``fn(client)`` on the first node that answers; its result and that node's URL."""
    errors = []
    for url in urls or settings.livekit_node_urls:
        try:
            return asyncio.run(lk.with_api(url, settings, fn, timeout)), url
        except API_ERRORS as exc:
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise IngressApiError("; ".join(errors) or "no LiveKit node URL is configured")


def create(
    settings: Settings, kind: str, room: str, identity: str, timeout: float,
    enable_transcoding: bool | None = None,
) -> Created:
    """CreateIngress for ``room``; the participant joins as ``identity``."""
    request = api.CreateIngressRequest(
        input_type=KINDS[kind], name=identity, room_name=room, participant_identity=identity,
        participant_name=identity,
    )
    if enable_transcoding is not None:
        request.enable_transcoding = enable_transcoding

    async def run(c: api.LiveKitAPI) -> api.IngressInfo:
        return await c.ingress.create_ingress(request)

    info, node = first_answer(settings, run, timeout)
    return Created(info.ingress_id, info.url, info.stream_key, node)


def state(settings: Settings, ingress_id: str, timeout: float) -> dict[str, str]:
    """The ingress's ``status`` (``ENDPOINT_PUBLISHING``, ...) and ``error``; ``status`` is
    ``"missing"`` when no ingress has that id."""

    async def run(c: api.LiveKitAPI) -> api.ListIngressResponse:
        try:
            return await c.ingress.list_ingress(api.ListIngressRequest(ingress_id=ingress_id))
        except api.TwirpError as exc:
            if exc.code == api.TwirpErrorCode.NOT_FOUND:
                return api.ListIngressResponse()
            raise

    answer, _ = first_answer(settings, run, timeout)
    for info in answer.items:
        if info.ingress_id == ingress_id:
            status = api.IngressState.Status.Name(info.state.status)
            return {"status": status, "error": info.state.error}
    return {"status": "missing", "error": ""}


def delete(settings: Settings, ingress_id: str, timeout: float) -> None:
    """DeleteIngress; an ingress that is already gone counts as deleted."""

    async def run(c: api.LiveKitAPI) -> None:
        try:
            await c.ingress.delete_ingress(api.DeleteIngressRequest(ingress_id=ingress_id))
        except api.TwirpError as exc:
            if exc.code != api.TwirpErrorCode.NOT_FOUND:
                raise

    first_answer(settings, run, timeout)


def participant(settings: Settings, room: str, identity: str, timeout: float) -> Seen:
    """Whether ``identity`` is in ``room`` and which kinds of track (audio, video) it
    publishes. A room that does not exist (yet) has nobody in it."""

    async def run(c: api.LiveKitAPI) -> list[api.ParticipantInfo]:
        try:
            answer = await c.room.list_participants(api.ListParticipantsRequest(room=room))
        except api.TwirpError as exc:
            if exc.code == api.TwirpErrorCode.NOT_FOUND:
                return []
            raise
        return list(answer.participants)

    people, _ = first_answer(settings, run, timeout)
    for person in people:
        if person.identity == identity:
            tracks: list[dict[str, object]] = [
                {"type": api.TrackType.Name(t.type).lower(), "mime_type": t.mime_type,
                 "muted": t.muted}
                for t in person.tracks
            ]
            kinds = {str(t["type"]) for t in tracks if not t["muted"]}
            return Seen(True, kinds, tracks)
    return Seen()
