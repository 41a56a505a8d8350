"""How many sampled replies a load run's judge may transcribe: a CPU budget per caller.

The load generator checks each reply by the agent's own report and, for a sample of them, by
transcribing what the caller heard (Whisper, about 0.2-0.3 CPU-second a reply here once
several share a window, ``BENCHMARKS.md``). A fixed fraction (every ``transcribe_every``-th
reply) costs CPU in proportion to the callers: at 200 callers every 5th reply is more than a
core of Whisper, the judge falls behind its callers and the generator, not the deployment,
is what breaks. :class:`JudgeBudget` bounds it: credit accrues at ``cores_per_caller`` for
every caller in a call (a token bucket of CPU-seconds), each decoding and transcription
spends the CPU the process used while it ran (``time.process_time``: Whisper decodes on
CTranslate2's own threads, which its calling thread's clock never sees: 0.005 CPU-second
there for a 0.37 one), and a sampled reply is transcribed
only while credit is left. A reply waits up to 30 s for others to share its Whisper window,
so what it will cost is reserved when it is taken (the mean cost of a reply so far) and
given back once it is judged, when its real cost has been spent. A reply the agent did not
report is transcribed whatever the credit (its verdict needs it), and spends too. Over a
run the judge's CPU for sampled replies stays within ``cores_per_caller`` x caller-seconds +
``burst_s`` + about one reply's cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["DEFAULT_CORES_PER_CALLER", "MAX_CORES_PER_CALLER", "JudgeBudget", "check_cores"]

#: The default budget (cores per caller): about a tenth of what a caller's media costs here
#: (0.015-0.02 cores, ``BENCHMARKS.md``), so that the generator as a whole stays near
#: ``lk load-test``'s publishers; about one reply in 15-20 at a turn every 7 s.
DEFAULT_CORES_PER_CALLER = 0.002
MAX_CORES_PER_CALLER = 1.0
#: Credit a run starts with (CPU-seconds): its first sampled replies are checked at once.
BURST_S = 1.0
#: What a reply is expected to cost (CPU-seconds) before three have been judged.
FIRST_ESTIMATE_S = 0.3

P = ParamSpec("P")
R = TypeVar("R")


def check_cores(value: object, name: str) -> float:
    """``value`` as cores per caller, 0 (no limit) to :data:`MAX_CORES_PER_CALLER`; a
    ValueError naming it as ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value <= MAX_CORES_PER_CALLER:
        raise ValueError(f"{name} must be from 0 (no limit) to {MAX_CORES_PER_CALLER:g} cores "
                         f"per caller, not {value!r}")
    return float(value)


class JudgeBudget:
    """A token bucket of CPU-seconds for the judge (thread-safe).

    ``cores_per_caller``: credit per caller per second (0: no limit, every sampled reply is
    transcribed). ``clock``: monotonic seconds (a stand-in in tests). ValueError outside
    0-1 cores per caller."""

    def __init__(self, cores_per_caller: float = DEFAULT_CORES_PER_CALLER,
                 burst_s: float = BURST_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.cores_per_caller = check_cores(cores_per_caller, "the judge's CPU budget")
        self._clock = clock
        self._lock = threading.Lock()
        self._credit = burst_s
        self._since = clock()
        self._callers: set[str] = set()
        self._caller_s = 0.0
        self.spent_s = 0.0
        self.judged = 0  # replies whose audio was judged (sampled or not), for the estimate
        self.transcribed = 0
        self.skipped = 0

    def join(self, caller: str) -> None:
        """``caller`` is in a call from now (credit accrues for it)."""
        with self._lock:
            self._accrue()
            self._callers.add(caller)

    def leave(self, caller: str) -> None:
        """``caller``'s call ended (a second call is harmless)."""
        with self._lock:
            self._accrue()
            self._callers.discard(caller)

    def take(self) -> float | None:
        """A sampled reply offered: None when the budget cannot pay for it (counted as
        skipped), else the CPU-seconds reserved for it, to :meth:`release` once judged."""
        with self._lock:
            self._accrue()
            if self.cores_per_caller and self._credit <= 0:
                self.skipped += 1
                return None
            self.transcribed += 1
            reserved = 0.0 if not self.cores_per_caller else self._estimate()
            self._credit -= reserved
            return reserved

    def release(self, reserved: float | None = 0.0) -> None:
        """A reply's audio was judged (its cost spent): give back what :meth:`take`
        reserved for it (0 or None for a reply that reserved nothing)."""
        with self._lock:
            self._credit += reserved or 0.0
            self.judged += 1

    def spend(self, cpu_s: float) -> None:
        """``cpu_s`` CPU-seconds the judge used (decoding, transcribing)."""
        with self._lock:
            self._credit -= max(0.0, cpu_s)
            self.spent_s += max(0.0, cpu_s)

    def timed(self, fn: Callable[P, R]) -> Callable[P, R]:
        """``fn`` with the CPU the whole process used while it ran spent from the budget:
        the threads ``fn`` works on included (Whisper's), and whatever else runs meanwhile,
        so the budget errs on the side of spending."""

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spend(time.process_time() - started)

        return run

    def summary(self) -> dict[str, Any]:
        """``{"cores_per_caller", "caller_s", "spent_cpu_s", "transcribed", "skipped"}``:
        the sampled replies transcribed and those skipped for want of credit so far."""
        with self._lock:
            self._accrue()
            return {"cores_per_caller": self.cores_per_caller,
                    "caller_s": round(self._caller_s, 1), "spent_cpu_s": round(self.spent_s, 3),
                    "transcribed": self.transcribed, "skipped": self.skipped}  # fmt: skip

    def _estimate(self) -> float:
        """The mean cost of a judged reply so far (its decoding and its share of a window)."""
        return self.spent_s / self.judged if self.judged >= 3 else FIRST_ESTIMATE_S

    def _accrue(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._since)
        self._since = now
        self._caller_s += elapsed * len(self._callers)
        self._credit += elapsed * len(self._callers) * self.cores_per_caller
