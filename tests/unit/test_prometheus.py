"""The Prometheus probes, Alertmanager's alerts and fault marks against a mock transport: the
shapes they return, the requests they send, how backend errors surface; the monitoring
settings and target section, and what needs them."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.preflight import check_call
from lkchaos.prometheus import client, marks, probes
from lkchaos.safety import ledger
from lkchaos.settings import ENV_KEYS, Settings
from lkchaos.target import load_target, missing
from lkchaos.target.convert import settings_values
from lkchaos.target.load import TargetInvalid

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"
PROM = "http://prom.test:9090"
AM = "http://am.test:9093"
PG = "http://pg.test:9091"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _monitoring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every URL points at a name only the mock transport answers; marks start unset."""
    monkeypatch.setenv("LKCHAOS_PROMETHEUS_URL", PROM)
    monkeypatch.setenv("LKCHAOS_ALERTMANAGER_URL", AM)
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", "")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setitem(marks._pushgateway, "url", "")
    monkeypatch.setattr(marks, "_warned", set())


class Backend:
    """Answers by path; records every request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.routes: dict[str, Any] = {}
        self.requests: list[httpx.Request] = []
        http = httpx.Client(transport=httpx.MockTransport(self._answer))
        monkeypatch.setattr(client, "shared_client", lambda: http)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(request.url.path)
        if route is None:
            return httpx.Response(404, text="404 page not found")
        if isinstance(route, list):  # answers in turn, the last one repeated
            route = route.pop(0) if len(route) > 1 else route[0]
        if isinstance(route, Exception):
            raise route
        answer: httpx.Response = route(request) if callable(route) else route
        return answer


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Backend:
    return Backend(monkeypatch)


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "data": data})


def vector(*series: tuple[dict[str, str], str]) -> httpx.Response:
    return ok({"resultType": "vector",
               "result": [{"metric": m, "value": [1.7e9, v]} for m, v in series]})


# --- query ------------------------------------------------------------------------------------

def test_query_sends_the_expression_and_a_timeout_prometheus_understands(
        backend: Backend) -> None:  # fmt: skip
    backend.routes["/api/v1/query"] = vector(({"job": "livekit"}, "0.25"))
    found = probes.query('rate(x{job="livekit"}[1m])', timeout=2.5)
    request = backend.requests[0]
    assert str(request.url).startswith(f"{PROM}/api/v1/query?")
    assert request.url.params["query"] == 'rate(x{job="livekit"}[1m])'
    assert request.url.params["timeout"] == "2500ms"
    assert found == {"ok": True, "value": 0.25, "series": [{"labels": {"job": "livekit"},
                                                            "value": 0.25}],
                     "count": 1, "result_type": "vector", "expr": 'rate(x{job="livekit"}[1m])',
                     "warnings": []}  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [
    ({"resultType": "vector", "result": []}, (False, None, 0)),
    ({"resultType": "vector", "result": [{"metric": {"i": "a"}, "value": [1, "1"]},
                                         {"metric": {"i": "b"}, "value": [1, "0"]}]},
     (True, None, 2)),
    ({"resultType": "scalar", "result": [1, "3.5"]}, (True, 3.5, 0)),
    ({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [2, "7"]]}]},
     (True, 7.0, 1)),
])  # fmt: skip
def test_query_value_is_the_one_number_of_the_result(
        backend: Backend, data: dict[str, Any], expected: tuple[Any, ...]) -> None:  # fmt: skip
    backend.routes["/api/v1/query"] = ok(data)
    found = probes.query("x")
    assert (found["ok"], found["value"], found["count"]) == expected


def test_a_query_prometheus_refuses_raises_with_its_message(backend: Backend) -> None:
    backend.routes["/api/v1/query"] = httpx.Response(400, json={
        "status": "error", "errorType": "bad_data",
        "error": '1:5: parse error: unclosed left parenthesis'})  # fmt: skip
    with pytest.raises(ActivityFailed, match=r"the query 'sum\(' failed: Prometheus at "
                       r"http://prom.test:9090 answered GET /api/v1/query with HTTP 400: "
                       r"bad_data: 1:5: parse error: unclosed left parenthesis"):  # fmt: skip
        probes.query("sum(")


def test_a_prometheus_that_cannot_be_reached_says_what_to_check(backend: Backend) -> None:
    backend.routes["/api/v1/query"] = httpx.ConnectError("connection refused")
    with pytest.raises(ActivityFailed, match="cannot be reached .*check that it runs"):
        probes.query("up")


def test_an_answer_that_is_not_prometheus_is_said_so(backend: Backend) -> None:
    backend.routes["/api/v1/query"] = httpx.Response(502, text="<html>Bad Gateway</html>")
    with pytest.raises(ActivityFailed, match="HTTP 502: <html>Bad Gateway</html>"):
        probes.query("up")


def test_no_prometheus_on_the_target_refuses_saying_what_to_set(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_PROMETHEUS_URL", "")
    with pytest.raises(ActivityFailed, match="no Prometheus: add `monitoring: "
                                             r"\{prometheus_url: URL\}`"):
        probes.query("up")
    monkeypatch.setenv("LKCHAOS_ALERTMANAGER_URL", "")
    with pytest.raises(ActivityFailed, match="no Alertmanager"):
        probes.alertmanager_alerts()
    assert backend.requests == []


@pytest.mark.parametrize(("arguments", "argument"), [
    ({"expr": ""}, "expr"), ({"expr": "up", "timeout": 0}, "timeout"),
    ({"expr": "up", "timeout": "5"}, "timeout"),
])  # fmt: skip
def test_query_arguments_are_checked_before_the_run(arguments: dict[str, Any],
                                                    argument: str) -> None:
    problems = check_call("lkchaos.prometheus.probes", "query", arguments)
    assert [p.argument for p in problems] == [argument]


# --- alerts -----------------------------------------------------------------------------------

RULES = ok({"groups": [{"name": "g", "rules": [
    {"type": "alerting", "name": "ServiceDown", "duration": 10, "state": "inactive"},
    {"type": "alerting", "name": "HighErrorRate", "duration": 60, "state": "inactive"},
    {"type": "recording", "name": "job:errors:rate1m"},
]}]})  # fmt: skip


def alerts(*found: tuple[str, dict[str, str], str]) -> httpx.Response:
    return ok({"alerts": [{"labels": {"alertname": name, **labels}, "state": state,
                           "activeAt": f"2026-01-01T00:00:0{i}Z", "value": "1e+00"}
                          for i, (name, labels, state) in enumerate(found)]})  # fmt: skip


def test_alert_state_is_firing_when_one_of_its_alerts_fires(backend: Backend) -> None:
    backend.routes["/api/v1/rules"] = RULES
    backend.routes["/api/v1/alerts"] = alerts(
        ("ServiceDown", {"job": "mcp"}, "pending"), ("ServiceDown", {"job": "agent"}, "firing"),
        ("HighErrorRate", {"job": "agent"}, "firing"))  # fmt: skip
    found = probes.alert_state("ServiceDown")
    assert (found["state"], found["count"], found["for_s"]) == ("firing", 2, 10.0)
    assert found["active_since"] == "2026-01-01T00:00:01Z"
    assert backend.requests[0].url.params["type"] == "alert"
    assert probes.alert_state("ServiceDown", {"job": "mcp"})["state"] == "pending"
    inactive = probes.alert_state("ServiceDown", {"job": "whisper"})
    assert (inactive["state"], inactive["active_since"], inactive["alerts"]) == (
        "inactive", None, [])


def test_an_alert_no_rule_has_is_an_error_naming_the_close_ones(backend: Backend) -> None:
    backend.routes["/api/v1/rules"] = RULES
    backend.routes["/api/v1/alerts"] = alerts()
    with pytest.raises(ActivityFailed, match=r"no alerting rule 'ServiceDwn' \(did you mean "
                                             r"ServiceDown\?\); its alerting rules: "
                                             "HighErrorRate, ServiceDown$"):
        probes.alert_state("ServiceDwn")


def test_wait_for_alert_polls_until_the_state_and_rides_out_an_outage(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    slept: list[float] = []
    monkeypatch.setattr("lkchaos.prometheus.probes.time.sleep", slept.append)
    backend.routes["/api/v1/rules"] = RULES
    backend.routes["/api/v1/alerts"] = [
        alerts(("ServiceDown", {"job": "agent"}, "pending")),
        httpx.ConnectError("connection refused"),
        alerts(("ServiceDown", {"job": "agent"}, "firing"))]  # fmt: skip
    found = probes.wait_for_alert("ServiceDown", "firing", within_s=600, labels={"job": "agent"},
                                  interval_s=0.5)  # fmt: skip
    assert (found["ok"], found["state"], found["polls"], found["last_error"]) == (
        True, "firing", 3, None)
    assert slept == [0.5, 0.5] and found["for_s"] == 10.0


def test_wait_for_alert_says_what_it_saw_when_the_bound_passes(backend: Backend) -> None:
    backend.routes["/api/v1/rules"] = RULES
    backend.routes["/api/v1/alerts"] = alerts(("ServiceDown", {}, "firing"))
    found = probes.wait_for_alert("ServiceDown", "inactive", within_s=0)
    assert (found["ok"], found["wanted"], found["state"], found["polls"]) == (
        False, "inactive", "firing", 1)
    backend.routes["/api/v1/alerts"] = httpx.ConnectError("connection refused")
    down = probes.wait_for_alert("ServiceDown", "inactive", within_s=0)
    assert not down["ok"] and "cannot be reached" in down["last_error"]


@pytest.mark.parametrize(("arguments", "argument"), [
    ({"alertname": "A", "state": "resolved"}, "state"),
    ({"alertname": "A", "within_s": -1}, "within_s"),
    ({"alertname": "A", "interval_s": 0.01}, "interval_s"),
    ({"alertname": "A", "labels": {"job": 1}}, "labels"),
    ({"alertname": ""}, "alertname"),
])  # fmt: skip
def test_wait_for_alert_arguments_are_checked_before_the_run(arguments: dict[str, Any],
                                                             argument: str) -> None:
    problems = check_call("lkchaos.prometheus.probes", "wait_for_alert", arguments)
    assert [p.argument for p in problems] == [argument]


# --- targets and Alertmanager -----------------------------------------------------------------

def test_targets_up_names_each_down_target_and_its_error(backend: Backend) -> None:
    def target(job: str, instance: str, health: str, error: str = "") -> dict[str, Any]:
        return {"labels": {"job": job, "instance": instance}, "scrapePool": job,
                "scrapeUrl": f"http://{instance}/metrics", "health": health,
                "lastError": error, "lastScrape": "2026-01-01T00:00:00Z"}

    backend.routes["/api/v1/targets"] = ok({"activeTargets": [
        target("livekit", "livekit-1:6789", "up"),
        target("livekit", "livekit-2:6789", "down", "connection refused"),
        target("agent", "agent:9464", "unknown")], "droppedTargets": []})  # fmt: skip
    found = probes.targets_up()
    assert backend.requests[0].url.params["state"] == "active"
    assert (found["ok"], found["count"], found["up"]) == (False, 3, 1)
    assert found["down"] == ["livekit/livekit-2:6789", "agent/agent:9464"]
    assert found["errors"] == {"livekit/livekit-2:6789": "connection refused",
                               "agent/agent:9464": "health unknown"}  # fmt: skip
    assert probes.targets_up(jobs=["livekit"])["down"] == ["livekit/livekit-2:6789"]
    only_up = probes.targets_up(jobs=["whisper"])
    assert (only_up["ok"], only_up["missing_jobs"]) == (False, ["whisper"])


def test_alertmanager_alerts_filters_by_name_and_reads_api_v2(backend: Backend) -> None:
    backend.routes["/api/v2/alerts"] = httpx.Response(200, json=[{
        "labels": {"alertname": "ServiceDown", "job": "agent"}, "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:04:00Z",
        "fingerprint": "abc", "receivers": [{"name": "hooks"}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}}])  # fmt: skip
    found = probes.alertmanager_alerts("ServiceDown")
    assert backend.requests[0].url.params.get_list("filter") == ['alertname="ServiceDown"']
    assert found == {"ok": True, "count": 1, "alerts": [{
        "labels": {"alertname": "ServiceDown", "job": "agent"}, "state": "active",
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-01T00:04:00Z",
        "receivers": ["hooks"], "fingerprint": "abc"}]}  # fmt: skip
    probes.alertmanager_alerts()
    assert "filter" not in backend.requests[1].url.params


# --- fault marks ------------------------------------------------------------------------------

def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode() or "="


@pytest.fixture
def pushes(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """The Pushgateway's groups and bodies as lkchaos PUTs them (path, body)."""
    seen: list[tuple[str, str]] = []

    def put(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content.decode()))
        return httpx.Response(200)

    monkeypatch.setattr(backend, "routes", _AnyPath(put))
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", PG)
    yield seen


class _AnyPath(dict[str, Any]):
    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key: str, default: Any = None) -> Any:
        return self.handler


def test_the_ledger_marks_a_fault_while_it_is_in_place(pushes: list[tuple[str, str]]) -> None:
    settings = Settings.load()
    ledger.begin_run("Agent pause / 1")
    try:
        ledger.record(settings.state_dir, ledger.Fault("paused", "agent", "lkchaos.docker.actions",
                                                       "unpause_service", {"service": "agent"}))
    finally:
        ledger.end_run()
    group = (f"/metrics/job@base64/{_b64('lkchaos')}/experiment@base64/{_b64('Agent pause / 1')}"
             f"/action@base64/{_b64('paused')}/target@base64/{_b64('agent')}")
    assert pushes == [(group, marks.exposition(1))]
    assert marks.exposition(1).splitlines()[1:] == ["# TYPE lkchaos_fault_active gauge",
                                                    "lkchaos_fault_active 1"]  # fmt: skip
    ledger.forget(settings.state_dir, "paused", "agent")
    assert pushes[1] == (group, marks.exposition(0))


def test_an_undone_fault_is_unmarked(pushes: list[tuple[str, str]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    undone: list[str] = []
    monkeypatch.setattr(marks, "undo_in_test", lambda configuration=None: undone.append("x"),
                        raising=False)  # fmt: skip
    settings = Settings.load()
    ledger.record(settings.state_dir, ledger.Fault("toxic", "agent_livekit/x",
                                                   "lkchaos.prometheus.marks", "undo_in_test"))
    results = ledger.undo_all(settings.state_dir)
    assert [r["outcome"] for r in results] == ["undone"] and undone == ["x"]
    assert [body.splitlines()[-1] for _, body in pushes] == ["lkchaos_fault_active 1",
                                                            "lkchaos_fault_active 0"]
    assert pushes[0][0] == pushes[1][0] and "/experiment@base64/=/" in pushes[0][0]


def test_no_pushgateway_means_no_marks(backend: Backend) -> None:
    settings = Settings.load()
    assert settings.pushgateway_url == "" and marks.pushgateway_url() == ""
    ledger.record(settings.state_dir, ledger.Fault("paused", "agent", "lkchaos.docker.actions",
                                                   "unpause_service", {"service": "agent"}))
    assert marks.fault_started({"kind": "paused", "target": "agent"}) is False
    assert backend.requests == []


def test_a_pushgateway_that_fails_is_said_once_and_fails_nothing(
        backend: Backend, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", PG)
    timeouts: list[Any] = []

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        raise httpx.ReadTimeout("timed out", request=request)

    backend.routes = _AnyPath(slow)
    settings = Settings.load()
    with caplog.at_level(logging.WARNING, logger="chaostoolkit"):
        for target in ("a", "b", "c"):
            ledger.record(settings.state_dir, ledger.Fault(
                "paused", target, "lkchaos.docker.actions", "unpause_service",
                {"service": target}))
        assert ledger.forget(settings.state_dir, "paused", "a") == 1
    assert [f.target for f in ledger.pending(settings.state_dir)] == ["b", "c"]
    said = [r.getMessage() for r in caplog.records if "fault marks" in r.getMessage()]
    assert len(said) == 1 and "Pushgateway at http://pg.test:9091 did not answer" in said[0]
    assert len(timeouts) == 4
    bound = timeouts[0]
    assert bound["connect"] + bound["write"] + bound["read"] <= 1.0


# --- settings, the target's monitoring section, needs -------------------------------------------

def test_the_defaults_are_the_reference_stacks_ports() -> None:
    defaults = Settings()
    assert (defaults.prometheus_url, defaults.alertmanager_url, defaults.pushgateway_url) == (
        "http://127.0.0.1:29090", "http://127.0.0.1:29093", "http://127.0.0.1:29091")
    assert {ENV_KEYS[k] for k in ("prometheus_url", "alertmanager_url", "pushgateway_url")} == {
        "LKCHAOS_PROMETHEUS_URL", "LKCHAOS_ALERTMANAGER_URL", "LKCHAOS_PUSHGATEWAY_URL"}


def _target(tmp_path: Path, monitoring: str) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(MINIMAL.read_text() + monitoring)
    (tmp_path / "keys.env").write_text("LK_SECRET=x\n")
    return path


def test_the_monitoring_section_gives_the_settings_and_what_can_run(tmp_path: Path) -> None:
    with_prometheus = load_target(_target(tmp_path, "monitoring:\n  prometheus_url: "
                                                    "http://10.0.0.60:9090\n"))
    values = settings_values(with_prometheus, resolve_secrets=False)
    assert (values["prometheus_url"], values["alertmanager_url"],
            values["pushgateway_url"]) == ("http://10.0.0.60:9090", "", "")  # fmt: skip
    target = with_prometheus.target
    assert missing(target, "lkchaos.prometheus.probes.wait_for_alert") == []
    assert missing(target, "lkchaos.prometheus.probes.alertmanager_alerts") == [
        "needs Alertmanager: the target has no monitoring.alertmanager_url"]
    without = load_target(MINIMAL)
    assert settings_values(without, resolve_secrets=False)["pushgateway_url"] == ""
    assert missing(without.target, "lkchaos.prometheus.probes.query") == [
        "needs Prometheus: the target has no monitoring.prometheus_url"]


def test_a_monitoring_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(TargetInvalid, match="monitoring.pushgateway_url.*not a http or https URL"):
        load_target(_target(tmp_path, "monitoring:\n  pushgateway_url: pg:9091\n"))
    with pytest.raises(TargetInvalid, match="monitoring.grafana_url"):
        load_target(_target(tmp_path, "monitoring:\n  grafana_url: http://g:3000\n"))


def test_empty_in_the_environment_means_none_and_configuration_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = _target(tmp_path, "monitoring:\n  prometheus_url: http://10.0.0.60:9090\n"
                             "  pushgateway_url: http://10.0.0.61:9091\n")
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    for key in ("LKCHAOS_PROMETHEUS_URL", "LKCHAOS_ALERTMANAGER_URL"):
        monkeypatch.delenv(key)
    monkeypatch.delenv("LKCHAOS_PUSHGATEWAY_URL")
    found = Settings.load()
    assert (found.prometheus_url, found.alertmanager_url, found.pushgateway_url) == (
        "http://10.0.0.60:9090", "", "http://10.0.0.61:9091")
    assert marks.pushgateway_url() == "http://10.0.0.61:9091"
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", "")
    assert Settings.load().pushgateway_url == "" and marks.pushgateway_url() == ""
    configured = Settings.load({"prometheus_url": "http://c:1", "pushgateway_url": "http://c:2"})
    assert (configured.prometheus_url, configured.pushgateway_url) == ("http://c:1",
                                                                       "http://c:2")



def test_a_scalar_is_ok_only_when_it_says_yes() -> None:
    from lkchaos.prometheus.probes import shape_result

    def scalar(text: str) -> dict[str, object]:
        return shape_result({"resultType": "scalar", "result": [1796000000.0, text]})

    assert scalar("1")["ok"] is True and scalar("0.5")["value"] == 0.5
    assert scalar("0")["ok"] is False and scalar("NaN")["ok"] is False
