"""LiveKit room work in a child process of its own, so that a crash of the SDK's native
WebRTC runtime ends that process and not the one that asked for the work.

The LiveKit SDK runs WebRTC in a native runtime. Now and then it aborts the whole process
(``Fatal Python error: Aborted``, status 134): once in a fresh-clone CI run of the checklist,
while a media source of a session already over was still being disposed. In ``lkchaos
validate`` (or a test run, or ``chaos run`` using the checklist's probes) that would end the
whole run, every other item's result lost with it. :func:`run_isolated` runs the work in a
child process instead, on that process's one rtc loop (:func:`lkchaos.livekit.background.run_rtc`):
a child that dies before it answered is tried again once (the crash is the client's, not the
deployment's), then reported as :class:`RuntimeCrashed`. A child that answered and then
crashed while leaving is of no consequence: its answer stands.

The work is an ``async`` function defined at a module's top level (the child imports it by
name) whose arguments and result can be pickled. Work the child could not import by name (a
function defined inside another, a test's stand-in) runs in this process, on its rtc loop,
as :func:`~lkchaos.livekit.background.run_rtc` would run it. A child starts fresh
(``spawn``): about a second to import the SDK, on top of the work.
"""

from __future__ import annotations

import copyreg
import logging
import multiprocessing
import pickle
import signal
import sys
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger("lkchaos")

#: Seconds allowed on top of the work's own bound for the child to start (importing the SDK)
#: and to hand its answer back.
START_S = 20.0
#: Seconds a child that answered is given to exit before it is killed.
EXIT_S = 10.0


class RuntimeCrashed(RuntimeError):
    """The child process running LiveKit room work died before it answered, every time."""


class HandedBackError(RuntimeError):
    """What the work raised, in words, where that exception could not cross from the child
    process to this one as itself (one that does not pickle, or not back)."""


def _twirp_error(code: str, message: str, status: int, metadata: dict[str, str]) -> Exception:
    """A LiveKit API error (``livekit.api.TwirpError``) rebuilt from its fields: it takes
    ``status`` by keyword only, so pickle cannot rebuild it by itself."""
    from livekit import api

    return api.TwirpError(code, message, status=status, metadata=metadata)


def _reduce_twirp(exc: Any) -> tuple[Any, tuple[Any, ...]]:
    return _twirp_error, (exc.code, exc.message, exc.status, dict(exc.metadata))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` as it can cross to the parent: itself when it pickles and unpickles; a LiveKit
    API error (any subclass) as a ``TwirpError`` with the same code, message, status and
    metadata, so that the parent's ``except api.TwirpError`` still catches it; anything else
    as a :class:`HandedBackError` naming its type and message."""
    from livekit import api

    copyreg.pickle(api.TwirpError, _reduce_twirp)
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception as why:  # noqa: BLE001 - whatever pickle finds wrong
        if isinstance(exc, api.TwirpError):
            return _twirp_error(exc.code, exc.message, exc.status, dict(exc.metadata))
        return HandedBackError(f"{type(exc).__name__}: {exc} (could not be handed back as "
                               f"itself: {type(why).__name__}: {why})")  # fmt: skip


def run_isolated(
    work: Callable[..., Coroutine[Any, Any, T]],
    *args: Any,
    timeout_s: float,
    attempts: int = 2,
    start_s: float = START_S,
) -> T:
    """``work(*args)`` run in a child process (see the module docstring), its result returned
    or what it raised raised here. Past ``timeout_s`` seconds (plus ``start_s``, to start and
    answer) the child is killed and ``TimeoutError`` raised. A child that dies before it
    answered is started again, up to ``attempts`` in all; then :class:`RuntimeCrashed`,
    naming how it died."""
    if not _importable(work):
        from lkchaos.livekit.background import run_rtc

        return run_rtc(work(*args), timeout_s)
    deaths: list[str] = []
    for _ in range(max(1, attempts)):
        answered, value = _once(work, args, timeout_s, start_s)
        if answered:
            kind, payload = value
            if kind == "raised":
                raise payload
            return payload  # type: ignore[no-any-return]
        deaths.append(value)
        logger.warning("LiveKit room work %s: its process %s", _name(work), value)
    raise RuntimeCrashed(
        f"LiveKit room work {_name(work)} ended its process each time it ran "
        f"({'; '.join(deaths)}): the LiveKit SDK's native runtime crashed, not the deployment"
    )


def _once(work: Callable[..., Any], args: tuple[Any, ...], timeout_s: float,
          start_s: float) -> tuple[bool, Any]:  # fmt: skip
    """``(True, (kind, payload))`` when the child answered, else ``(False, how it died)``."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(sender, work, args, timeout_s), daemon=True,
        name=f"lkchaos-rtc-{_name(work)}",
    )  # fmt: skip
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s + start_s):
            process.kill()
            process.join(EXIT_S)
            raise TimeoutError(
                f"LiveKit room work {_name(work)} did not answer in {timeout_s + start_s:g} s"
            )
        try:
            message = receiver.recv()
        except EOFError:  # the child died before it answered
            process.join(EXIT_S)
            ended = how_it_ended(process.exitcode)
            return False, ended if process.exitcode and process.exitcode < 0 \
                else f"{ended} before it answered"
        except Exception as exc:  # noqa: BLE001 - an answer that could not be rebuilt here
            message = ("raised", HandedBackError(
                f"LiveKit room work {_name(work)} answered with something this process could "
                f"not read back ({type(exc).__name__}: {exc})"))  # fmt: skip
    finally:
        receiver.close()
    process.join(EXIT_S)
    if process.is_alive():
        process.kill()
        process.join(EXIT_S)
    elif process.exitcode:
        logger.info("LiveKit room work %s answered, then its process %s", _name(work),
                    how_it_ended(process.exitcode))  # fmt: skip
    return True, message


def _child(sender: Connection, work: Callable[..., Coroutine[Any, Any, Any]],
           args: tuple[Any, ...], timeout_s: float) -> None:  # fmt: skip
    from lkchaos.livekit.background import run_rtc

    try:
        message: tuple[str, Any] = ("ok", run_rtc(work(*args), timeout_s))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, raised there
        message = ("raised", _portable(exc))
    try:
        sender.send(message)
    except Exception as exc:  # noqa: BLE001 - a result that does not pickle
        sender.send(("raised", HandedBackError(
            f"{_name(work)} returned {type(message[1]).__name__}, which could not be handed "
            f"back ({type(exc).__name__}: {exc})")))  # fmt: skip
    finally:
        sender.close()


def how_it_ended(exitcode: int | None) -> str:
    """A child process's end in words, from its exit code (negative: the signal that ended
    it, as ``subprocess`` and ``multiprocessing`` report it): ``was ended by SIGABRT``,
    ``exited with status 1``."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was ended by {name}"
    return f"exited with status {exitcode}"


def _importable(work: Callable[..., Any]) -> bool:
    """Whether a child process finds ``work`` by its module and name."""
    module = sys.modules.get(getattr(work, "__module__", "") or "")
    return module is not None and getattr(module, getattr(work, "__qualname__", ""), None) is work


def _name(work: Callable[..., Any]) -> str:
    return getattr(work, "__qualname__", repr(work))
