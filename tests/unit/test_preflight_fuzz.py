"""Property: arguments the preflight check rejects make the action fail before it changes
anything.

Every action of every lkchaos action module is called with generated arguments (good values,
junk of every JSON type, strings built to inject options or shell). Every backend an action
can reach is replaced by a recorder: the Docker client, the Toxiproxy client, the network
sidecar, the LiveKit and Redis clients, the fault ledger. When ``preflight.check_call``
rejects the arguments, the action must raise ``ActivityFailed`` with nothing recorded. (Missing
or unknown arguments and unresolved ``${name}`` values are Chaos Toolkit's binding and
substitution, checked in test_preflight.py; required arguments are always given here.)
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkchaos import preflight
from lkchaos.discovery import ACTIVITY_MODULES


def _takes_arguments(module: str, func: str) -> bool:
    action = getattr(importlib.import_module(module), func)
    return bool(inspect.signature(action).parameters.keys() - {"configuration", "secrets"})


#: Every action with an argument to fuzz (recover, reset, start_resolver and restore_dns take
#: none: nothing of theirs can be rejected).
ACTIONS = [(module, func) for module, kind in ACTIVITY_MODULES if kind == "action"
           for func in importlib.import_module(module).__all__
           if _takes_arguments(module, func)]  # fmt: skip

GOOD: dict[str, list[Any]] = {
    "service": ["agent", "livekit-1", "redis-primary"], "one_of": [["agent", "whisper"]],
    "signal": ["SIGKILL", "term"], "timeout": [0, 10], "proxy": ["agent_livekit"],
    "toxic_type": ["latency", "slicer"], "attributes": [{"latency": 10}, {"average_size": 5}],
    "stream": ["upstream"], "toxicity": [0.5, 1], "latency_ms": [100], "jitter_ms": [5],
    "rate_kbytes_s": [10], "timeout_ms": [0, 500], "delay_ms": [10], "bytes": [1000],
    "name": ["lk.chaos.test", "lkchaos_latency_downstream", "held-call"],
    "only_lkchaos": [True], "peers": [["livekit-1"]], "direction": ["both", "egress"],
    "percent": [0, 20.5], "ports": [["7882/udp"], ["8000"]], "rate_kbit": [64],
    "mode": ["pause", "stop"], "address": ["192.0.2.1", "::1"], "kind": ["expired", "expiring"],
    "days": [1, 30.5], "wait_s": [1.0], "empty_timeout": [60], "node": [0, 1],
}
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=6), st.integers(-5, 5), max_size=2),
    st.sampled_from(["--all", "-rf", "a;b", "$(reboot)", "x\ny", "nul\x00", "prober", "../x",
                     "SIGFOO", "sideways", "70000/udp", "7882/tcp", "", " "]),
)


def _arguments(func: Any) -> st.SearchStrategy[dict[str, Any]]:
    params = [p for n, p in inspect.signature(func).parameters.items()
              if n not in ("configuration", "secrets")]  # fmt: skip
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for p in params:
        choices = [st.sampled_from(GOOD[p.name])] if p.name in GOOD else []
        omitted = [st.just(inspect.Parameter.empty)] if p.default is not p.empty else []
        fields[p.name] = st.one_of(*choices, JUNK, *omitted)
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not inspect.Parameter.empty})


class Recorder:
    """Stands for every backend: any use of it is recorded and fails the call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def backend(self, name: str) -> Any:
        def touched(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise RuntimeError(f"{name} reached with arguments the preflight rejects")

        return touched


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    targets = {
        "lkchaos.docker.actions": ["docker_session"],
        "lkchaos.network.actions": ["docker_client"],
        "lkchaos.dns.actions": ["docker_client"],
        "lkchaos.tls.rotation": ["docker", "restore"],
        "lkchaos.toxiproxy.client": ["connect"],
        "lkchaos.network.sidecar": ["run", "ensure_image", "clear"],
        "lkchaos.livekit.client": ["call"],
        "lkchaos.redis.client": ["master_address", "connect"],
        "lkchaos.safety.ledger": ["record", "forget"],
        "lkchaos.safety.recovery": ["recover"],
    }
    for module, names in targets.items():
        for name in names:
            monkeypatch.setattr(importlib.import_module(module), name,
                                rec.backend(f"{module}.{name}"))
    return rec


@pytest.mark.parametrize(("module", "func"), ACTIONS, ids=lambda v: str(v).split(".")[-1])
def test_a_rejected_call_changes_nothing(module: str, func: str, recorder: Recorder) -> None:
    action = getattr(importlib.import_module(module), func)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_arguments(action))
    def run(arguments: dict[str, Any]) -> None:
        problems = preflight.check_call(module, func, arguments)
        if not problems:
            return
        recorder.calls.clear()
        with pytest.raises(ActivityFailed):
            action(**arguments)
        assert recorder.calls == [], (arguments, [str(p) for p in problems])

    run()
