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
