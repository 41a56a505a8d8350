"""Held callers as Locust users: voice load beyond one machine, on Locust's distributed mode.

Each Locust user holds one conversation (:mod:`lkchaos.voice.held`: a caller that joined once
and keeps asking) and reports each turn as a Locust request: type ``voice``, name ``turn``,
response time the turn's latency (end of the caller's speech to the first reply audio, ms),
a failure when the turn was not answered right (its stage and reason). Run it with Locust's
own command, a master and workers anywhere that can reach the target's prober::

    locust -f "$(python -c 'import lkchaos.load.locustfile as m; print(m.__file__)')" \\
        --master --headless -u 50 -r 5 -t 10m --expect-workers 2
    locust -f ... --worker --master-host MASTER     # on each worker machine

The target is found as every lkchaos command finds it (``LKCHAOS_TARGET``, or the reference
stack's state folder, ``LKCHAOS_STATE_DIR``); the calls run in its voice prober
(``voice_prober_url``), so a worker needs no Whisper of its own. ``LKCHAOS_TRANSCRIBE_EVERY``
(default 5) sets how many replies one transcription covers. Each user's call ends when the
user stops; one Locust could not end is ended by the prober 45 s after its last read.

Locust patches the standard library with gevent when it starts: import this module only in
a Locust process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from locust import User, constant, events, task

from lkchaos.settings import Settings
from lkchaos.voice import held
from lkchaos.voice.session import Options

#: Longest a user waits for its call's next turn (seconds).
TURN_WAIT_S = 30.0


class TurnFailed(Exception):
    """A turn that was not answered right: its stage and reason."""


class HeldCaller(User):
    """One held conversation per user; each turn is a request."""

    wait_time = constant(0)

    def on_start(self) -> None:
        settings = Settings.load()
        if not settings.voice_prober_url:
            raise RuntimeError("the Locust users need the target's voice prober "
                               "(voice_prober_url): held calls cannot run inside Locust")
        self.backend = held.backend(settings)
        every = int(os.environ.get("LKCHAOS_TRANSCRIBE_EVERY", "5"))
        self.options = Options(duration_s=3600, max_turns=2000, transcribe_every=every)
        self._start_call()

    def _start_call(self) -> None:
        self.call_id, self.room = self.backend.start(self.options)
        self.seen = 0

    @task
    def turn(self) -> None:
        data = self.backend.turns(self.call_id, self.seen, TURN_WAIT_S)
        for turn in data.get("turns") or []:
            self.seen = max(self.seen, int(turn.get("turn") or 0))
            self._report(turn)
        if data.get("state") == "ended":  # the call ended by itself: a failure, then anew
            self._report({"ok": False, "stage": "call_ended", "latency_s": None,
                          "reason": str(data.get("end_reason"))})  # fmt: skip
            self.backend.end(self.call_id)
            self._start_call()

    def _report(self, turn: dict[str, Any]) -> None:
        latency = turn.get("latency_s")
        failed = None if turn.get("ok") else TurnFailed(
            f"{turn.get('stage')}: {str(turn.get('reason'))[:200]}")
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="voice", name="turn",
            response_time=float(latency) * 1000.0 if latency is not None else 0.0,
            response_length=0, exception=failed,
            context={"room": self.room, "turn": turn.get("turn"), "at": time.time()},
        )  # fmt: skip

    def on_stop(self) -> None:
        call_id = getattr(self, "call_id", None)
        if call_id is not None:
            self.backend.end(call_id)
