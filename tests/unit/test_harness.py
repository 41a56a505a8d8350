"""The test session itself: what it gives the processes it starts."""

from __future__ import annotations

import signal
import subprocess
import sys


def test_a_runner_started_by_the_tests_honours_ctrl_c() -> None:
    # The interruption tests send SIGINT to `chaos run`; a child that inherited an ignored
    # SIGINT (a suite started in the background by a script) would never stop.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) != 0
    finally:
        child.kill()
        child.wait(10)
