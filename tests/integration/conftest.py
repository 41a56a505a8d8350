"""Integration tests run against the live reference stack (`lkchaos stack up` first)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lkchaos.settings import Settings
from lkchaos.stack.compose import Compose, docker_client
from lkchaos.stack.health import require_running
from lkchaos.stack.layout import StackPaths

#: Modules that inject no fault into the reference stack, judge no latency, need no idle CPU
#: and leave nothing the checklist judges (marked ``early``): scripts/test.sh runs them beside
#: the unit tests, as soon as the stack is up, in a session of their own, before the
#: checklist's tests. In one session with the others they run right after those. Not here:
#: test_agent (a room deleted under its agent leaves the agent's job in Redis and an error in
#: the agent's log, which the checklist's healthy run would fail on) and test_room_state (its
#: participants and rooms).
EARLY = ("test_bad_experiments.py", "test_packaging.py", "test_caddy.py", "test_dns.py",
         "test_livekit.py", "test_redis.py", "test_toxiproxy.py",
         "test_monitoring_stack.py")  # fmt: skip
#: A file scripts/test.sh names: created once the checklist's tests are done (at the first
#: test that is not one of them, or at the session's end), to start the second lane then.
CHECKLIST_DONE_ENV = "LKCHAOS_TEST_CHECKLIST_DONE"


def _checklist(item: pytest.Item) -> bool:
    return item.path.name.startswith("test_validate")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
            if item.path.name in EARLY:
                item.add_marker(pytest.mark.early)
    # The checklist's run on the healthy stack comes first (the stack as `lkchaos stack up`
    # left it, before any test's faults), then the modules marked early; tests marked
    # order_last (the scan of everything the run produced) run after the rest.
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("order_last") is not None:
            return 3
        if _checklist(item):
            return 0
        return 1 if item.path.name in EARLY else 2

    items.sort(key=rank)


def _checklist_done() -> None:
    path = os.environ.get(CHECKLIST_DONE_ENV)
    if path and not os.path.exists(path):
        Path(path).touch()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _checklist(item):
        _checklist_done()


def pytest_sessionfinish() -> None:
    _checklist_done()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def docker() -> Iterator[object]:
    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def stack_is_up(docker: object) -> None:
    """Fail (not skip) when the stack is not healthy: these tests exist to run against it."""
    require_running(Compose(StackPaths.discover()), docker)


def wait_baseline(timeout: float = 120) -> dict[str, Any]:
    """The baseline probe, retried until ok or ``timeout`` s (services may still be starting)."""
    from lkchaos.safety.probes import baseline

    deadline = time.monotonic() + timeout
    while True:
        state = baseline()
        if state["ok"] or time.monotonic() > deadline:
            return state
        time.sleep(1)


ROOT = Path(__file__).resolve().parents[2]
QUICK_GAMEDAY = ROOT / "gamedays" / "quick.yaml"


@dataclass(frozen=True)
class GamedayRun:
    returncode: int
    out: Path
    stderr: str

    def journal(self, experiment: str) -> Path:
        """The journal of the first run of the entry of ``experiment`` (a file name)."""
        stem = Path(experiment).stem
        found = sorted(self.out.glob(f"[0-9][0-9]-{stem}-1.json"))
        assert found, f"the quick game day left no journal of {stem} in {self.out}: {self.stderr}"
        return found[0]


@pytest.fixture(scope="session")
def quick_gameday(tmp_path_factory: pytest.TempPathFactory) -> GamedayRun:
    """`gamedays/quick.yaml` run once, exactly as a CI resilience stage runs it
    (`lkchaos gameday run --ci --out DIR`). Its journals stand for those experiments' own
    runs in test_experiments_run; in CI its report, Markdown and JUnit are kept in
    .ci/artifacts/quick."""
    if os.environ.get("CI") == "true":
        out = ROOT / ".ci" / "artifacts" / "quick"
    else:
        out = tmp_path_factory.mktemp("quick-gameday")
    done = subprocess.run(
        [sys.executable, "-m", "lkchaos.gameday", "run", "--ci", "--out", str(out),
         str(QUICK_GAMEDAY)],
        cwd=ROOT, text=True, capture_output=True, timeout=1800, check=False,
    )  # fmt: skip
    return GamedayRun(done.returncode, out, done.stderr[-4000:])


#: Experiments whose run is shared by two tests: the detection test of
#: test_cert_dns_faults (with a fault window longer than a voice sample, so that a caller is
#: seen failing) and test_experiments_run, which reads the same journal.
SHARED_RUNS = ("cert-expiry.json",)


@pytest.fixture(scope="session")
def shared_journals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each experiment of :data:`SHARED_RUNS` -> the journal of its one run with
    ``LKCHAOS_FAULT_S=20``, run on first use."""
    return {}


def shared_run(journals: dict[str, Path], experiment: str, tmp: Path) -> Path:
    """The journal of ``experiment``'s shared run (run now if it was not yet)."""
    if experiment not in journals:
        journal = tmp / f"shared-{experiment}"
        subprocess.run(
            [str(Path(sys.executable).parent / "chaos"), "--no-version-check", "run",
             "--journal-path", str(journal), str(ROOT / "experiments" / experiment)],
            cwd=ROOT, env={**os.environ, "LKCHAOS_FAULT_S": "20"}, timeout=900, check=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        journals[experiment] = journal
    return journals[experiment]
