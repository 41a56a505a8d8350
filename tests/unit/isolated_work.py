"""Room work for tests/unit/test_isolated.py, importable by name in a child process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def refuse(why: str) -> None:
    raise ValueError(why)


async def abort_once(marker: str) -> str:
    """Abort the process the first time (no ``marker`` file yet), answer the next."""
    path = Path(marker)
    if not path.exists():
        path.write_text("aborted once")
        os.abort()
    return "answered"


async def abort() -> None:
    os.abort()


async def hang() -> None:
    await asyncio.sleep(3600)


async def freeze() -> None:
    """Stop the whole process (as a native deadlock would): it never answers."""
    import signal

    os.kill(os.getpid(), signal.SIGSTOP)


async def pid() -> int:
    return os.getpid()


async def refuse_as_livekit(status: int) -> None:
    """Raise what the LiveKit API client raises for an HTTP error (its status keyword-only)."""
    from livekit import api

    raise api.TwirpError("unauthenticated", "invalid token", status=status,
                         metadata={"hint": "check the API key"})  # fmt: skip


class _Unreadable(Exception):
    """Pickles, but cannot be rebuilt from what it pickled (its __init__ needs two)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")


async def refuse_unreadably() -> None:
    raise _Unreadable("no such room", "node 2")


class _Odd:
    def __init__(self, a: int) -> None:
        self.a = a

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _Odd, ()  # rebuilt without its argument: fails on the way back


async def answer_unreadably() -> object:
    return _Odd(1)
