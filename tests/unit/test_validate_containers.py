"""Service startup items: each assessment on what ``docker inspect`` and the logs say.

The inspect data below has the shape the engine returns (trimmed to the fields read); the
log lines are the services' own formats (Caddy's JSON, LiveKit's console, logfmt, Python).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lkchaos.settings import Settings
from lkchaos.validate.checks import containers as c
from lkchaos.validate.model import Context


def inspect(status: str = "running", health: str | None = "healthy", restarts: int = 0,
            env: list[str] | None = None, mounts: list[dict[str, str]] | None = None,
            ports: list[str] | None = None, oom: bool = False,
            exit_code: int = 0) -> dict[str, Any]:  # fmt: skip
    state: dict[str, Any] = {"Status": status, "Running": status == "running",
                             "OOMKilled": oom, "ExitCode": exit_code,
                             "StartedAt": "2026-11-30T10:57:21.123456789Z"}  # fmt: skip
    if health is not None:
        state["Health"] = {"Status": health, "Log": [{"Output": "curl: (7) refused\n"}]}
    return {"State": state, "RestartCount": restarts,
            "Config": {"Env": env or ["PATH=/usr/bin"],
                       "ExposedPorts": {p: {} for p in ports or []}},
            "Mounts": mounts or []}  # fmt: skip


def box(name: str, logs: str = "", **kwargs: Any) -> c.Box:
    return c.Box(name, f"lkchaos-{name}-1", inspect(**kwargs), logs)


CADDY_ERROR = ('{"level":"error","ts":1796036339.2,"logger":"http.log.error",'
               '"msg":"dial tcp 172.29.77.11:7880: connect: connection refused"}')
#: Caddy's layer 4 app when a client answered the certificate with a TLS alert.
CLIENT_REFUSED = ('{"level":"error","ts":1796104665.84,"logger":"caddy.listeners.layer4",'
                  '"msg":"handling connection","error":"remote error: tls: unknown '
                  'certificate authority"}')


@pytest.mark.parametrize("line", [
    CADDY_ERROR,
    "2026-11-30T10:58:59.178Z\tERROR\tlivekit\tservice/roommanager.go:120\tcould not load",
    'ts=2026-11-30T10:57:21Z caller=main.go:1 level=error msg="open /x: no such file"',
    "2026-11-30 10:58:58,809 ERROR agent: job failed",
    "panic: runtime error: invalid memory address",
    "Traceback (most recent call last):",
    "1:C 30 Nov 2026 10:57:21.000 # FATAL CONFIG FILE ERROR (Redis 7.0.15)",
])
def test_error_lines_in_each_services_format(line: str) -> None:
    assert c.error_line(f"starting\n{line}\nready") == line


@pytest.mark.parametrize("line", [
    '{"level":"info","msg":"serving initial configuration"}',
    "2026-11-30T10:57:21Z\tINFO\tlivekit\tstarting LiveKit server\t{\"errors\": 0}",
    "1:M 30 Nov 2026 10:57:21.000 * Ready to accept connections tcp",
    "no error so far",
    "2026-11-30T10:58:59Z\tERROR\tlivekit.transport.pion.pc\tv4@v4.2.17/peerconnection.go:2122"
    "\tdropping candidate with ufrag IA8P because it doesn't match the current ufrags",
    CLIENT_REFUSED,
    "2026/11/30 10:58:59 http: TLS handshake error from 172.29.77.1:5123: remote error: tls: "
    "bad certificate",
])
def test_lines_that_are_not_errors(line: str) -> None:
    assert c.error_line(line) is None


def test_started_names_the_problem_of_each_container() -> None:
    good = c.assess_started([box("livekit-1"), box("livekit-2")], "LiveKit")
    assert good.status == "pass"
    assert good.evidence == ("LiveKit: livekit-1 up since 2026-11-30T10:57:21, livekit-2 up "
                             "since 2026-11-30T10:57:21, no error line in its logs")
    bad = c.assess_started([box("livekit-1", restarts=2), box("livekit-2", logs=CADDY_ERROR),
                            box("caddy", status="exited", exit_code=1),
                            box("redis", oom=True)], "x")  # fmt: skip
    assert bad.status == "fail"
    assert bad.evidence == ("livekit-1 restarted 2 time(s); livekit-2 logged: " + CADDY_ERROR
                            + "; caddy is exited (exit code 1); redis was killed for lack of "
                            "memory")  # fmt: skip


def test_healthy_unhealthy_and_without_a_healthcheck() -> None:
    assert c.assess_healthy([box("a"), box("b")]).evidence == "all 2 containers healthy"
    warn = c.assess_healthy([box("a"), box("b", health=None)])
    assert (warn.status, warn.evidence) == ("warn", "1 healthy; without a healthcheck: b")
    fail = c.assess_healthy([box("a", health="unhealthy"), box("b", status="exited")])
    assert fail.status == "fail"
    assert fail.evidence == "not healthy: a unhealthy (curl: (7) refused), b exited"


def test_logs_name_the_container_and_its_line() -> None:
    found = c.assess_logs([box("caddy", logs=f"ok\n{CADDY_ERROR}"), box("redis", logs="ok")])
    assert found.status == "fail"
    assert found.evidence.startswith("1 of 2 containers logged errors since they started: "
                                     "caddy: {\"level\":\"error\"")
    assert c.assess_logs([box("redis", logs="ok")]).status == "pass"


def test_handshakes_clients_refused_warn_and_never_hide_an_error() -> None:
    bad = CLIENT_REFUSED.replace("unknown certificate authority", "bad certificate")
    twice = f"{CLIENT_REFUSED}\n{bad}"
    warned = c.assess_logs([box("caddy", logs=f"ok\n{twice}"), box("redis", logs="ok")])
    assert warned.status == "warn"
    assert "TLS handshakes refused by clients: caddy: 2 (last: remote error: tls: bad " \
           "certificate)" in warned.evidence
    assert warned.data["tls_refused_by_clients"] == {"caddy": 2}
    assert c.assess_started([box("caddy", logs=twice)], "Caddy").status == "pass"
    both = c.assess_logs([box("caddy", logs=f"{CADDY_ERROR}\n{CLIENT_REFUSED}")])
    assert both.status == "fail"
    assert both.evidence.endswith("(last: remote error: tls: unknown certificate authority): "
                                  "a client that does not trust the certificate served; if "
                                  "the TLS items pass, the client lacks the CA")


def test_refusals_inside_a_quiet_window_are_set_apart() -> None:
    stamped = f"2026-11-30T10:58:59.000Z {CLIENT_REFUSED}"
    when = c._stamped(stamped)[0]
    assert when is not None
    assert c.peer_refusals(stamped, [(when - 1, when + 1)]) == []
    assert c.assess_logs([box("caddy", logs=stamped)], [(when - 1, when + 1)]).status == "pass"


def test_environment_names_empty_variables_never_values() -> None:
    full = box("agent", env=["LIVEKIT_API_SECRET=s3cret", "NO_PROXY="])
    assert c.assess_env([full]).status == "pass"
    empty = c.assess_env([full, box("mcp", env=["OPENAI_API_KEY=", "PORT=8000"])])
    assert empty.status == "fail" and "mcp: OPENAI_API_KEY" in empty.evidence
    assert "s3cret" not in str(empty)


def test_configuration_files() -> None:
    mounted = box("livekit-1", mounts=[
        {"Type": "bind", "Source": "/s/livekit.yaml", "Destination": "/etc/livekit.yaml"},
        {"Type": "volume", "Source": "data", "Destination": "/data"}])  # fmt: skip
    assert c.config_files(mounted) == ["/etc/livekit.yaml"]
    ok = c.assess_config({"livekit-1": [("/etc/livekit.yaml", True)]}, [mounted])
    assert ok.status == "pass" and ok.evidence.startswith("1 configuration files mounted")
    missing = c.assess_config({"livekit-1": [("/etc/livekit.yaml", False)]}, [mounted])
    assert missing.evidence == "not readable in the container: livekit-1: /etc/livekit.yaml"
    broken = box("caddy", logs='{"level":"error","msg":"adapting config using caddyfile"}')
    assert "configuration error in the logs of caddy" in c.assess_config({}, [broken]).evidence
    assert c.assess_config({}, [box("a")]).status == "warn"


def test_resolution_and_reach() -> None:
    ok = c.assess_resolution("agent", {"redis-primary": "172.29.77.20", "caddy": "172.29.77.10"})
    assert ok.status == "pass" and "redis-primary → 172.29.77.20" in ok.evidence
    bad = c.assess_resolution("agent", {"redis-primary": "172.29.77.20", "lk.chaos.test": None})
    assert bad.evidence == "from agent, these names do not resolve: lk.chaos.test"
    # one port answering is enough: an exposed port nobody listens on refuses
    reached = c.assess_reach("agent", {"caddy": {443: "ok", 2019: "ConnectionRefusedError"},
                                       "sentinel-1": {26379: "ok", 6379: "refused"}})
    assert reached.status == "pass"
    cut = c.assess_reach("agent", {"caddy": {443: "ok"}, "redis": {6379: "TimeoutError"}})
    assert cut.evidence == ("from agent, 1 of 2 services cannot be reached: redis (6379: "
                            "TimeoutError)")
    assert c.assess_reach("agent", {}).status == "warn"
    assert c.exposed_tcp(box("x", ports=["7881/tcp", "7882/udp", "7880/tcp"])) == [7880, 7881]


def _resolving(monkeypatch: pytest.MonkeyPatch, rounds: list[dict[str, str]]) -> list[list[str]]:
    """The DNS item with its in-container lookups scripted: each round answers the names it
    is asked from ``rounds`` in turn; returns the names asked in each round."""
    asked: list[list[str]] = []
    source = box("agent")
    monkeypatch.setattr(c, "boxes", lambda _ctx: [source, box("caddy"), box("redis")])
    monkeypatch.setattr(c, "_prober", lambda _ctx: source)
    monkeypatch.setattr(c, "RESOLVE_RETRY_S", 0.0)

    def probe(_ctx: Context, _box: c.Box, names: list[str]) -> dict[str, str]:
        asked.append(list(names))
        answers = rounds[min(len(asked), len(rounds)) - 1]
        return {n: answers[n] for n in names}

    monkeypatch.setattr(c, "_probe", probe)
    return asked


GAI = "!gaierror:_[Errno_-3]_Temporary_failure_in_name_resolution"


def test_a_name_that_resolves_when_asked_again_is_a_warning_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    asked = _resolving(monkeypatch, [{"caddy": GAI, "redis": "172.29.77.20"},
                                     {"caddy": "172.29.77.10"}])  # fmt: skip
    found = c.dns_from_containers(Context(Settings(state_dir=str(tmp_path), tls_names=())))
    assert asked == [["caddy", "redis"], ["caddy"]]  # only the failed name asked again
    assert found.status == "warn", found
    assert found.evidence == ("from agent, 2 names resolve, but caddy failed first (gaierror: "
                              "[Errno -3] Temporary failure in name resolution) and resolved "
                              "only when asked again: the resolver is not answering reliably")


def test_a_name_that_never_resolves_fails_with_the_resolvers_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    asked = _resolving(monkeypatch, [{"caddy": GAI, "redis": "172.29.77.20"}])
    found = c.dns_from_containers(Context(Settings(state_dir=str(tmp_path), tls_names=())))
    assert asked == [["caddy", "redis"]] + [["caddy"]] * c.RESOLVE_RETRIES
    assert (found.status, found.evidence) == (
        "fail", "from agent, these names do not resolve: caddy (gaierror: [Errno -3] Temporary "
                "failure in name resolution)")


def test_a_service_unreachable_a_moment_is_asked_again_and_one_that_answers_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    asked: list[list[str]] = []
    source = box("agent")
    targets = [box("caddy", ports=["443/tcp", "2019/tcp"]), box("redis", ports=["6379/tcp"])]
    monkeypatch.setattr(c, "boxes", lambda _ctx: [source, *targets])
    monkeypatch.setattr(c, "_prober", lambda _ctx: source)
    monkeypatch.setattr(c, "RESOLVE_RETRY_S", 0.0)
    rounds = [{"caddy|443": "ok", "caddy|2019": "!ConnectionRefusedError", "redis|6379": GAI},
              {"redis|6379": "ok"}]  # fmt: skip

    def probe(_ctx: Context, _box: c.Box, args: list[str]) -> dict[str, str]:
        asked.append(list(args))
        return {a: rounds[len(asked) - 1][a] for a in args}

    monkeypatch.setattr(c, "_probe", probe)
    found = c.reach(Context(Settings(state_dir=str(tmp_path))))
    # caddy answered on one port (its admin port refusing is normal): only redis asked again
    assert asked == [["caddy|443", "caddy|2019", "redis|6379"], ["redis|6379"]]
    assert found.status == "pass", found


def test_a_role_the_target_does_not_have_is_not_applicable(tmp_path: Path) -> None:
    ctx = Context(Settings(state_dir=str(tmp_path)))
    egress = c.CHECKS_BY_ROLE["startup.egress-container-starts"](ctx)
    assert (egress.status, egress.evidence) == (
        "n/a", "no Egress is configured for this target (roles egress)")


def test_without_an_engine_the_items_say_how_to_start_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    ctx = Context(Settings(state_dir=str(tmp_path)))
    with pytest.raises(Exception, match="cannot reach the Docker engine.*`docker info`"):
        c.healthy(ctx)
    with pytest.raises(Exception, match="cannot reach the Docker engine"):
        c.quiet_logs(ctx)  # the same fact, raised again for every item that needs it


def test_error_lines_during_lkchaos_faults_are_set_apart(tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    audit_file.write_text(
        '{"time": "2026-01-01T10:00:00+00:00", "run": "r1", "outcome": "injected"}\n'
        '{"time": "2026-01-01T10:00:30+00:00", "run": "r1", "outcome": "undone"}\n'
        '{"time": "2026-01-01T12:00:00+00:00", "run": "r2", "outcome": "injected"}\n')
    windows = c.chaos_windows(str(tmp_path), now=_epoch("2026-01-01T12:10:00"))
    assert windows == [(_epoch("2026-01-01T09:59:55"),
                        _epoch("2026-01-01T10:00:30") + c.RECOVERY_GRACE_S),
                       (_epoch("2026-01-01T11:59:55"), _epoch("2026-01-01T12:10:00"))]
    logs = ("2026-01-01T10:01:00.123456789Z level=ERROR during the fault's recovery\n"
            "2026-01-01T11:00:00.5Z level=ERROR between the runs\n"
            "2026-01-01T12:05:00Z level=ERROR while a fault is never undone\n")
    assert c.error_line(logs, windows) == "level=ERROR between the runs"
    assert c.set_apart(logs, windows) == 2
    assert c.error_line(logs) == "level=ERROR during the fault's recovery"


def _epoch(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text + "+00:00").timestamp()
