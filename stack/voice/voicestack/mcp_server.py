"""MCP tool server for the voice agent (official ``mcp`` SDK, streamable HTTP at ``/mcp``).

In ``mcp`` 2.x the SDK's high-level server is ``mcp.server.mcpserver.MCPServer`` (the
renamed ``FastMCP`` of 1.x). The server runs stateless with plain JSON responses, so a
restart of this process (or a dropped connection) costs clients nothing but the failed
request.

Tools:

- ``add(a, b)``, ``subtract(a, b)``, ``multiply(a, b)``, ``divide(a, b)``: numbers in,
  number out; division by zero is a tool error ("Division by zero is undefined.").
- ``current_time(timezone="UTC")``: ISO-8601 time in an IANA time zone.
- ``lookup(topic)``: a small built-in table (capitals of a dozen countries), by
  ``"capital of <country>"`` or the country name; unknown topics are a tool error
  starting with "Unknown topic".

Plus ``GET /health`` -> 200 ``{"status": "ok", "tools": [...]}`` and ``GET /metrics``
(Prometheus: the process's own metrics).

Run: ``python -m voicestack.mcp_server --host 0.0.0.0 --port 8100``. Started on a loopback
host the SDK also turns on its DNS-rebinding protection (Host header must be loopback).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .dialogue import apply_operation

log = logging.getLogger("voicestack.mcp")

CAPITALS: dict[str, str] = {
    "france": "Paris",
    "germany": "Berlin",
    "italy": "Rome",
    "spain": "Madrid",
    "portugal": "Lisbon",
    "united kingdom": "London",
    "united states": "Washington, D.C.",
    "canada": "Ottawa",
    "japan": "Tokyo",
    "china": "Beijing",
    "india": "New Delhi",
    "australia": "Canberra",
    "brazil": "Brasilia",
    "egypt": "Cairo",
    "kenya": "Nairobi",
}
ALIASES: dict[str, str] = {
    "uk": "united kingdom",
    "britain": "united kingdom",
    "great britain": "united kingdom",
    "england": "united kingdom",
    "usa": "united states",
    "us": "united states",
    "america": "united states",
    "united states of america": "united states",
}

server: MCPServer = MCPServer(
    "lkchaos-tools",
    instructions="Arithmetic, the current time and a small fact table for the lkchaos agent.",
)


def _arith(op: str, a: float, b: float) -> float:
    try:
        return apply_operation(op, a, b)
    except ZeroDivisionError as exc:
        raise ToolError(str(exc)) from exc


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers: a + b."""
    return _arith("add", a, b)


@server.tool()
def subtract(a: float, b: float) -> float:
    """Subtract b from a: a - b."""
    return _arith("subtract", a, b)


@server.tool()
def multiply(a: float, b: float) -> float:
    """Multiply two numbers: a * b."""
    return _arith("multiply", a, b)


@server.tool()
def divide(a: float, b: float) -> float:
    """Divide a by b: a / b. Dividing by zero is an error."""
    return _arith("divide", a, b)


@server.tool()
def current_time(timezone: str = "UTC") -> str:
    """The current time as ISO-8601, in an IANA time zone such as "UTC" or "Asia/Tokyo"."""
    try:
        zone = UTC if timezone.upper() in ("UTC", "GMT", "Z") else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"Unknown time zone: {timezone}") from exc
    return datetime.now(zone).isoformat(timespec="seconds")


def normalise_topic(topic: str) -> str:
    """The table key for a topic: "What is the Capital of France?" -> "france"."""
    text = re.sub(r"[^a-z ]", " ", topic.lower())
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^(?:what is |whats )?(?:the )?(?:capital (?:city )?of )?(?:the )?", "", text)
    return ALIASES.get(text, text)


@server.tool()
def lookup(topic: str) -> str:
    """Look up a fact. Knows capitals: topic "capital of <country>" or just the country."""
    key = normalise_topic(topic)
    if key in CAPITALS:
        return CAPITALS[key]
    raise ToolError(f"Unknown topic: {topic}")


TOOL_NAMES = ("add", "subtract", "multiply", "divide", "current_time", "lookup")


async def health(request: Request) -> Response:
    """Liveness for the orchestrator."""
    return JSONResponse({"status": "ok", "tools": list(TOOL_NAMES)})


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


server.custom_route("/health", methods=["GET"])(health)
server.custom_route("/metrics", methods=["GET"])(metrics)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="MCP tool server for the lkchaos agent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    import uvicorn

    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=args.host
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
