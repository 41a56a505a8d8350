"""The stack's own voice services: Whisper transcribes speech, MCP serves its tools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from lkchaos.docker.client import service_container
from lkchaos.settings import Settings
from lkchaos.stack import layout

WHISPER = f"http://127.0.0.1:{layout.host_port('whisper')}"
MCP = f"http://127.0.0.1:{layout.host_port('mcp')}/mcp"
WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
         "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


def normalise(text: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()
    return " ".join(WORDS.get(w, w) for w in words)


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/bootstrap.sh")
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "What is two plus three?"], check=True,
                   timeout=30)
    return path


def test_whisper_health() -> None:
    response = httpx.get(f"{WHISPER}/health", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_whisper_transcribes_an_espeak_clip(question_wav: Path) -> None:
    with question_wav.open("rb") as audio:
        response = httpx.post(
            f"{WHISPER}/v1/audio/transcriptions",
            files={"file": ("question.wav", audio, "audio/wav")},
            data={"model": "tiny.en", "response_format": "json"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    assert normalise(response.json()["text"]) == "what is 2 plus 3"


def _dropped() -> float:
    """Transcription requests Whisper dropped because their client had gone (its metrics)."""
    metrics = httpx.get(f"{WHISPER}/metrics", timeout=5).text
    found = re.search(  # labels as the exposition writes them: sorted by name
        r'whisper_http_requests_total\{code="499",path="/v1/audio/transcriptions"\} (\S+)',
        metrics)
    return float(found.group(1)) if found else 0.0


def test_whisper_drops_a_waiting_request_whose_client_went_away(tmp_path: Path) -> None:
    # Long speech holds Whisper's one slot for a while; a request sent behind it whose client
    # gives up is dropped when its turn comes, not transcribed for nobody. How long the slot
    # is held depends on the machine (a minute of speech took 1.2 s on an idle one, a few
    # seconds on a busy one): the speech doubles until it outlasts the second request.

    def post(wav: Path, timeout: float) -> int:
        with wav.open("rb") as audio:
            return httpx.post(f"{WHISPER}/v1/audio/transcriptions",
                              files={"file": ("long.wav", audio, "audio/wav")},
                              data={"model": "tiny.en"}, timeout=timeout).status_code

    for repeats in (24, 48, 96, 192):  # about 1.5, 3, 6 and 12 minutes of speech
        long_wav = tmp_path / f"long-{repeats}.wav"
        subprocess.run(["espeak-ng", "-w", str(long_wav)], input=" ".join(
            ["What is two plus three? Four times six is twenty-four."] * repeats).encode(),
            check=True, timeout=60)  # fmt: skip
        before = _dropped()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, long_wav, 120)
            time.sleep(0.5)  # the first request holds the slot
            with pytest.raises(httpx.TimeoutException):
                post(long_wav, 0.5)  # waits behind it, then its client gives up
            held = not first.done()
            assert first.result() == 200
        if held:
            break
    else:
        pytest.fail("the first transcription always ended before the second gave up")
    deadline = time.monotonic() + 30
    while _dropped() < before + 1:
        assert time.monotonic() < deadline, "the abandoned request was not dropped"
        time.sleep(0.5)


def test_whisper_drops_an_upload_its_client_abandons_without_an_error(
    docker: Any, settings: Settings
) -> None:
    # The agent cancels an early recognition while its audio is still being sent.
    before = _dropped()
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
    host, port = WHISPER.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: whisper\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n"
                    b"Content-Length: 100000\r\n\r\n" + body + b"RIFF" + bytes(1000))
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while _dropped() < before + 1:
        assert time.monotonic() < deadline, "the abandoned upload was not counted as dropped"
        time.sleep(0.3)
    whisper = service_container(docker, settings.compose_project, "whisper")
    logs = whisper.logs(since=int(time.time()) - 30).decode(errors="replace")
    assert " ERROR " not in logs, logs[-2000:]


def test_whisper_rejects_a_request_without_audio() -> None:
    response = httpx.post(f"{WHISPER}/v1/audio/transcriptions", data={"model": "x"}, timeout=10)
    assert response.status_code == 400


async def _mcp_session() -> tuple[list[str], str, bool]:
    http = httpx2.AsyncClient(timeout=10)
    async with http, streamable_http_client(MCP, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            result = await session.call_tool("multiply", {"a": 17, "b": 3})
            text = "".join(getattr(c, "text", "") for c in result.content)
            failed = await session.call_tool("divide", {"a": 1, "b": 0})
            return tools, text, bool(failed.is_error)


def test_mcp_lists_its_tools_and_computes() -> None:
    tools, text, division_by_zero_failed = asyncio.run(_mcp_session())
    assert {"add", "subtract", "multiply", "divide", "current_time", "lookup"} <= set(tools)
    assert float(text) == 51
    assert division_by_zero_failed
