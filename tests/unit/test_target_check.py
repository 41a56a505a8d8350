"""``lkchaos target check``: the needs table, offline verdicts, and reaching real servers."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lkchaos.discovery import ACTIVITY_MODULES
from lkchaos.target import NEEDS, catalogue, load_target, missing
from lkchaos.target.cli import target as target_cli
from lkchaos.target.needs import CHECKS, COMPONENT
from tests.unit.local_servers import LocalDNS, TLSListener, server_context

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "stack" / "targets" / "reference.yaml"
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"

#: What does not apply on the minimal target (one node, direct Redis with AUTH, nginx,
#: no Toxiproxy, no resolver, no voice section), and why.
NO_SENTINEL = "needs Redis Sentinel: the target's Redis is direct"
NO_RESOLVER = "needs a resolver: the target has none"
NO_FAULTABLE = "needs a resolver lkchaos may fault: the target has none"
NO_TOXIPROXY = "needs Toxiproxy: the target has none"
NO_VOICE = "needs the voice section (the agent name callers dispatch): the target has none"
NO_PROMETHEUS = "needs Prometheus: the target has no monitoring.prometheus_url"
NO_ALERTMANAGER = "needs Alertmanager: the target has no monitoring.alertmanager_url"
NO_RECEIVER = "needs a webhook receiver: the target has no monitoring.receiver_url"
NO_INGRESS = "needs LiveKit Ingress: the target has no ingress section"
MINIMAL_MISSING = {
    "lkchaos.redis.actions.sentinel_failover": NO_SENTINEL,
    "lkchaos.redis.probes.sentinel_master": NO_SENTINEL,
    "lkchaos.redis.probes.remember_primary": NO_SENTINEL,
    "lkchaos.redis.probes.primary_kept": NO_SENTINEL,
    "lkchaos.dns.probes.resolve_names": NO_RESOLVER,
    **{f"lkchaos.dns.actions.{f}": NO_FAULTABLE for f in (
        "stop_resolver", "start_resolver", "nxdomain_name", "wrong_address", "servfail_name",
        "restore_name", "restore_dns")},
    **{f"lkchaos.toxiproxy.{f}": NO_TOXIPROXY for f in (
        "probes.proxies_state", "probes.link_latency", "actions.add_toxic",
        "actions.add_latency", "actions.add_bandwidth", "actions.add_timeout",
        "actions.add_reset_peer", "actions.add_slow_close", "actions.add_limit_data",
        "actions.remove_toxic", "actions.remove_all_toxics", "actions.disable_proxy",
        "actions.enable_proxy", "actions.reset")},
    "lkchaos.voice.probes.voice_round_trip": NO_VOICE,
    "lkchaos.voice.probes.voice_round_trips": NO_VOICE,
    "lkchaos.voice.probes.held_call_turn": NO_VOICE,
    "lkchaos.voice.probes.end_held_call": NO_VOICE,
    "lkchaos.voice.probes.held_conversation": NO_VOICE,
    **{f"lkchaos.prometheus.probes.{f}": NO_PROMETHEUS for f in (
        "query", "alert_state", "wait_for_alert", "targets_up")},
    "lkchaos.prometheus.probes.alertmanager_alerts": NO_ALERTMANAGER,
    "lkchaos.hooks.probes.room_webhooks": NO_RECEIVER,
    "lkchaos.hooks.probes.alert_delivered": NO_RECEIVER,
    "lkchaos.hooks.probes.webhooks_for_call": f"{NO_RECEIVER}; {NO_VOICE}",
    "lkchaos.ingress.probes.rtmp_publish": NO_INGRESS,
    "lkchaos.ingress.probes.whip_publish": NO_INGRESS,
}  # fmt: skip


def test_every_catalogue_function_is_in_the_needs_table() -> None:
    functions = catalogue()
    assert set(functions) == set(NEEDS), (
        f"missing from NEEDS: {sorted(set(functions) - set(NEEDS))}; "
        f"not in the catalogue: {sorted(set(NEEDS) - set(functions))}")
    modules = {name.rsplit(".", 1)[0] for name in functions}
    assert modules == {module for module, _ in ACTIVITY_MODULES}


def test_every_need_has_a_check_and_a_component() -> None:
    used = {need for needs in NEEDS.values() for need in needs}
    assert used <= set(CHECKS) and set(CHECKS) == set(COMPONENT)


def test_everything_applies_to_the_reference_target() -> None:
    target = load_target(REFERENCE).target
    assert {name: missing(target, name) for name in NEEDS if missing(target, name)} == {}


def test_what_does_not_apply_to_the_minimal_target() -> None:
    target = load_target(MINIMAL).target
    found = {name: "; ".join(missing(target, name)) for name in NEEDS if missing(target, name)}
    assert found == MINIMAL_MISSING


def _offline(path: Path, *extra: str) -> list[str]:
    result = CliRunner().invoke(target_cli, ["check", "--offline", "--target", str(path),
                                             *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines()
            if not line.startswith(("state folder:", "run folder:",
                                    "overridden by the environment:"))]


def test_an_environment_override_and_the_state_folder_are_named(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("LIVEKIT_URL", "wss://prod.example.com")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("LKCHAOS_PUSHGATEWAY_URL")  # set to "" for every unit test
    result = CliRunner().invoke(target_cli, ["check", "--offline", "--target", str(MINIMAL)])
    lines = result.output.splitlines()
    assert ("overridden by the environment: LIVEKIT_URL (sets livekit_url); unset them to use "
            "the target's values") in lines  # fmt: skip
    assert any(line.startswith(f"state folder: {tmp_path / 'state'} (the fault ledger and ")
               for line in lines)  # fmt: skip
    # Another target than the reference stack: its runs have a folder of their own.
    assert any(line.startswith(f"run folder: {tmp_path / 'state' / 'targets'}/minimal-")
               for line in lines)  # fmt: skip


def test_offline_check_of_the_reference_target() -> None:
    lines = _offline(REFERENCE)
    total = len(catalogue())
    assert lines[0] == f"target: {REFERENCE} (from --target)"
    assert lines[1] == ("valid: 2 livekit node(s), redis via sentinel, tls proxy caddy, "
                        "resolver dnsmasq (may fault), toxiproxy, compose project lkchaos")
    assert lines[2] == "reachability: not checked (--offline)"
    assert lines[3] == f"activities: {total} of {total} can run on this target"
    end = 4 + total
    assert lines[4:end] == [f"  ok  {name}" for name in catalogue()]
    experiments = sorted(path.name for path in (ROOT / "experiments").glob("*.json"))
    count = len(experiments)
    assert lines[end] == f"experiments: {count} of {count} apply to this target"
    assert lines[end + 1:] == [f"  ok  {name}" for name in experiments]


def test_offline_check_of_the_minimal_target() -> None:
    lines = _offline(MINIMAL)
    total = len(catalogue())
    assert lines[1] == ("valid: 1 livekit node(s), redis direct, tls proxy nginx, no resolver, "
                        "no toxiproxy, docker containers by name")
    assert lines[3] == (f"activities: {total - len(MINIMAL_MISSING)} of {total} can run on "
                        "this target")
    refused = {line.split()[1].rstrip(":"): line.split(": ", 1)[1]
               for line in lines[4:4 + total] if line.startswith("  no ")}
    assert refused == MINIMAL_MISSING


def test_experiments_that_do_not_apply_say_exactly_why() -> None:
    # The minimal target with a voice section: what is left out is what the target lacks.
    lines = _offline(MINIMAL, "--", str(ROOT / "experiments" / "livekit-node-loss.json"),
                     str(ROOT / "experiments" / "agent-crash.json"),
                     str(ROOT / "experiments" / "redis-failover.json"))
    start = lines.index("experiments: 0 of 3 apply to this target")
    assert lines[start + 1:] == [
        "  no  livekit-node-loss.json",
        "        - service 'livekit_node:2': the target has 1 livekit_node (lk-server), so "
        "livekit_node:2 does not exist (kill-livekit-2, livekit-2-back)",
        "        - needs the voice section (the agent name callers dispatch): the target has "
        "none (caller-answered)",
        "  no  agent-crash.json",
        "        - needs the voice section (the agent name callers dispatch): the target has "
        "none (caller-answered)",
        "  no  redis-failover.json",
        "        - needs Redis Sentinel: the target's Redis is direct (sentinels-agree)",
        "        - needs the voice section (the agent name callers dispatch): the target has "
        "none (caller-answered)",
    ]


def test_reload_none_and_unfaultable_resolver(tmp_path: Path) -> None:
    text = MINIMAL.read_text().replace("reload: {signal: SIGHUP}", "reload: none")
    text += "resolver: {kind: dnsmasq, address: \"127.0.0.1:53\"}\n"
    path = tmp_path / "t.yaml"
    path.write_text(text)
    target = load_target(path).target
    assert missing(target, "lkchaos.tls.actions.swap_certificate") == [
        "needs a way to reload the TLS proxy's certificates: the target's tls_proxy has "
        "reload: none"]
    assert missing(target, "lkchaos.dns.actions.stop_resolver") == [
        "needs a resolver lkchaos may fault: the target's resolver has may_fault: false"]
    assert missing(target, "lkchaos.dns.probes.resolve_names") == []


# -- online: real local servers, never Docker ---------------------------------------------


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def listener() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


class _Handshakes(TLSListener):
    """A TLS proxy on 127.0.0.1 for the minimal target's name: completes the handshake, then
    closes."""

    def __init__(self, folder: Path) -> None:
        from lkchaos import certs

        crt, key = folder / "proxy.crt", folder / "proxy.key"
        certs.write_pair(certs.make_leaf(certs.make_ca(), ["rtc.example.org"]), crt, key)
        self.ctx = server_context(crt, key)
        self.listen()

    def handle_tls(self, tls: ssl.SSLSocket) -> None:
        pass


@pytest.fixture
def tls_proxy(tmp_path: Path) -> Iterator[str]:
    server = _Handshakes(tmp_path)
    yield server.address
    server.close()


@pytest.fixture
def resolver() -> Iterator[str]:
    server = LocalDNS({"rtc.example.org": "192.0.2.10"})
    yield server.address
    server.close()


@pytest.fixture
def closed_port() -> Iterator[str]:
    """A port bound and never listening for the test's length: connections are refused, and
    no other test can listen on it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _target(tmp_path: Path, node: str, redis: str, proxy: str, resolver: str) -> Path:
    (tmp_path / "keys.env").write_text("LK_SECRET=s3cr3t-never-shown\n")
    # Quoted, so that a port put in by an earlier replacement is never matched again.
    text = (MINIMAL.read_text().replace('"http://127.0.0.1:7880"', f'"{node}"')
            .replace('"127.0.0.1:6379"', f'"{redis}"').replace('"127.0.0.1:443"', f'"{proxy}"'))
    text += f"resolver: {{kind: dnsmasq, address: \"{resolver}\"}}\n"
    path = tmp_path / "target.yaml"
    path.write_text(text)
    return path


def _one_probe(path: Path, name: str, module: str, func: str) -> Path:
    """An experiment whose steady state is one probe, ``module.func``, written to ``path``."""
    path.write_text(json.dumps({
        "title": path.stem, "description": "d", "method": [],
        "steady-state-hypothesis": {"title": "h", "probes": [{
            "type": "probe", "name": name, "tolerance": True,
            "provider": {"type": "python", "module": module, "func": func}}]}}))  # fmt: skip
    return path


def test_online_check_reports_what_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str, listener: str,
    closed_port: str, tls_proxy: str,
) -> None:
    from lkchaos.target import reach

    monkeypatch.setattr(reach, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("LK_KEY", "s3cr3t-never-shown")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    path = _target(tmp_path, http_url, listener, tls_proxy, closed_port)
    result = CliRunner().invoke(target_cli, ["check", "--target", str(path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "s3cr3t-never-shown" not in out
    assert f"ok    livekit node only: {http_url} answered HTTP 200" in out
    assert f"ok    redis primary: {listener} accepts connections" in out
    assert (f"ok    tls proxy (nginx): {tls_proxy} completed a TLS handshake for "
            "rtc.example.org (TLSv1.3)") in out
    assert (f"FAIL  resolver: {closed_port} gave no DNS answer over UDP for rtc.example.org "
            "within 0.5 s: down, paused or hung, or not a resolver") in out
    assert "ok    secret livekit.api_key: env LK_KEY resolves (***)" in out
    assert "FAIL  secret redis.direct.password_ref: env REDIS_PASSWORD: the environment " \
           "variable REDIS_PASSWORD is not set or empty; export it" in out
    assert "FAIL  docker engine: the Docker engine is not reachable: " in out
    assert ("  no  lkchaos.docker.actions.kill_service: docker failed a check (see above)"
            in out)
    assert ("  no  lkchaos.dns.probes.resolve_names: resolver failed a check (see above)"
            in out)
    assert "  ok  lkchaos.tls.probes.hsts\n" in out
    # An experiment whose roles the target has, but whose activities reach a component
    # that failed above, does not "apply": the listing said ok beside the failures.
    names = _one_probe(tmp_path / "names.json", "names-resolve", "lkchaos.dns.probes",
                       "resolve_names")
    result = CliRunner().invoke(target_cli, ["check", "--target", str(path), str(names)])
    assert "experiments: 0 of 1 apply to this target and can reach what they use" in \
        result.output, result.output
    assert "  no  names.json\n        - resolver failed a check (see above) " \
           "(names-resolve)\n" in result.output


@pytest.fixture(scope="module")
def livekit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real livekit-server (``--dev``) on loopback with the key pair of ``livekit_dev``."""
    from tests.unit.livekit_dev import dev_server

    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


def _keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, node: str, listener: str,
           secret: str, tls_proxy: str, resolver: str) -> Path:  # fmt: skip
    from tests.unit.livekit_dev import KEY

    monkeypatch.setattr("lkchaos.target.reach.runtime_checks", lambda target: [])
    monkeypatch.setenv("LK_KEY", KEY)
    monkeypatch.setenv("REDIS_PASSWORD", "p")
    path = _target(tmp_path, node, listener, tls_proxy, resolver)
    (tmp_path / "keys.env").write_text(f"LK_SECRET={secret}\n")
    return path


def test_online_check_exits_0_when_everything_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, livekit_node: str, listener: str,
    tls_proxy: str, resolver: str,
) -> None:
    from tests.unit.livekit_dev import SECRET

    path = _keyed(tmp_path, monkeypatch, livekit_node, listener, SECRET, tls_proxy, resolver)
    result = CliRunner().invoke(target_cli, ["check", "--target", str(path)])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert "ok    livekit node only API key: accepted (ListRooms: " in result.output


def test_a_key_pair_the_nodes_refuse_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, livekit_node: str, listener: str,
    tls_proxy: str, resolver: str,
) -> None:
    # Reachable and resolving, but not a pair LiveKit knows: the runs would fail at their
    # steady state on a 401; the check says so first, and nothing needing LiveKit can run.
    wrong = "not-the-secret-of-this-server-0123456789"
    path = _keyed(tmp_path, monkeypatch, livekit_node, listener, wrong, tls_proxy, resolver)
    result = CliRunner().invoke(target_cli, ["check", "--target", str(path)])
    assert result.exit_code == 1, result.output
    assert wrong not in result.output
    assert "FAIL  livekit node only API key: refused (HTTP 401" in result.output
    assert "must be a pair from LiveKit's `keys:`" in result.output
    assert "  no  lkchaos.livekit.probes.room_state: livekit failed a check (see above)" \
        in result.output, result.output


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_ca_file_that_does_not_load_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str, listener: str,
    tls_proxy: str, resolver: str, content: str | None,
) -> None:
    monkeypatch.setattr("lkchaos.target.reach.runtime_checks", lambda target: [])
    monkeypatch.setattr("lkchaos.target.reach.credential_checks", lambda loaded: [])
    monkeypatch.setenv("LK_KEY", "k")
    monkeypatch.setenv("REDIS_PASSWORD", "p")
    path = _target(tmp_path, http_url, listener, tls_proxy, resolver)
    path.write_text(path.read_text().replace("  kind: nginx\n",
                                             "  kind: nginx\n  ca_file: certs/ca.pem\n"))
    if content is not None:
        (tmp_path / "certs").mkdir()
        (tmp_path / "certs" / "ca.pem").write_text(content)
    result = CliRunner().invoke(target_cli, ["check", "--target", str(path)])
    assert result.exit_code == 1, result.output
    where = repr(str(tmp_path / "certs" / "ca.pem"))
    expected = (f"FAIL  tls_proxy.ca_file: no file {where}: correct tls_proxy.ca_file"
                if content is None else f"FAIL  tls_proxy.ca_file: {where} is not a PEM CA")
    assert expected in result.output, result.output
    assert "  no  lkchaos.tls.probes.hsts: tls_proxy failed a check (see above)" \
        in result.output


def test_online_node_answering_500_is_unreachable(tmp_path: Path, closed_port: str) -> None:
    from lkchaos.target.reach import http_get

    found = http_get("livekit", "node", f"http://{closed_port}/", timeout=1.0)
    assert not found.ok and "did not answer" in found.detail


def test_lkchaos_check_lists_the_experiments_that_use_what_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener: str, closed_port: str,
    tls_proxy: str, resolver: str,
) -> None:
    # A half-wrong target (a node's port wrong): `lkchaos check` said ok, and the run then
    # sampled nothing but failures and recorded an RTO of the whole run.
    from lkchaos.cli import main

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("LK_KEY", "k")
    monkeypatch.setenv("REDIS_PASSWORD", "p")
    path = _target(tmp_path, f"http://{closed_port}", listener, tls_proxy, resolver)
    nodes = _one_probe(tmp_path / "nodes.json", "nodes-ready", "lkchaos.livekit.probes",
                       "nodes_health")
    result = CliRunner().invoke(main, ["check", "--target", str(path), str(nodes)])
    assert result.exit_code == 2, result.output
    assert f"{nodes}: 1 problem(s)" in result.output
    assert "livekit failed a check (below) (nodes-ready)" in result.output
    assert f"FAIL  livekit node only: http://{closed_port}/ did not answer" in result.output \
        or f"FAIL  livekit node only: http://{closed_port} did not answer" in result.output
    offline = CliRunner().invoke(main, ["check", "--offline", "--target", str(path), str(nodes)])
    assert offline.exit_code == 0, offline.output  # nothing is reached offline


class _Proxies(http.server.BaseHTTPRequestHandler):
    """Toxiproxy's ``GET /proxies``: one proxy, ``agent_livekit``."""

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = json.dumps({"agent_livekit": {"name": "agent_livekit", "listen": "[::]:17880",
                                             "upstream": "livekit-1:7880", "enabled": True,
                                             "toxics": []}}).encode()  # fmt: skip
        self.send_response(200 if self.path == "/proxies" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_toxiproxy_link_naming_no_proxy_fails_only_its_link(tmp_path: Path) -> None:
    from lkchaos.target import reach

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}"
        text = MINIMAL.read_text() + (f"toxiproxy:\n  api_url: \"{api}\"\n  links:\n"
                                      "    agent_livekit: agent_livekit\n"
                                      "    agent_tool_server: agent_mcpp\n")
        path = tmp_path / "target.yaml"
        path.write_text(text)
        checks = reach.toxiproxy_checks(load_target(path).target)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [(c.what, c.ok) for c in checks] == [("toxiproxy link agent_livekit", True),
                                                ("toxiproxy link agent_tool_server", False)]
    assert checks[0].detail == "proxy 'agent_livekit': [::]:17880 -> livekit-1:7880"
    assert checks[1].detail == (f"no proxy 'agent_mcpp' in Toxiproxy at {api} (it has: "
                                "agent_livekit): correct toxiproxy.links.agent_tool_server")


def test_a_missing_link_stops_only_the_activities_on_that_link() -> None:
    from lkchaos.target import applies

    loaded = load_target(ROOT / "stack" / "targets" / "reference.yaml")
    missing = {"link agent_tool_server": "no proxy 'agent_mcpp' in Toxiproxy"}

    def slow(name: str, proxy: str) -> dict[str, object]:
        return {"type": "action", "name": name, "provider": {
            "type": "python", "module": "lkchaos.toxiproxy.actions", "func": "add_latency",
            "arguments": {"proxy": proxy, "latency_ms": 100}}}

    experiment = {"title": "t", "description": "d",
                  "method": [slow("tools", "agent_tool_server"), slow("lk", "agent_livekit")]}
    found = applies.describe(applies.reasons(experiment, loaded, missing_roles=missing))
    assert found == ["link agent_tool_server: no proxy 'agent_mcpp' in Toxiproxy (tools)"]


def test_a_node_url_the_environment_overrides_is_checked_at_that_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str, listener: str,
    tls_proxy: str, resolver: str,
) -> None:
    # A run uses LKCHAOS_LIVEKIT_NODE_URLS over the file's nodes: the check must reach those.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("LK_KEY", "k")
    monkeypatch.setenv("LKCHAOS_LIVEKIT_NODE_URLS", f"garbage,{http_url}")
    path = _target(tmp_path, http_url, listener, tls_proxy, resolver)
    out = CliRunner().invoke(target_cli, ["check", "--target", str(path)]).output
    assert "FAIL  livekit node garbage (from LKCHAOS_LIVEKIT_NODE_URLS): garbage did not " \
           "answer" in out, out
    assert f"ok    livekit node {http_url} (from LKCHAOS_LIVEKIT_NODE_URLS)" in out
    assert "livekit node only:" not in out  # the file's node is not what a run would use


def test_a_sentinel_that_accepts_and_never_answers_fails(
    listener: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A paused Sentinel (pause_service) still accepts connections: the kernel does.
    from lkchaos.settings import Settings
    from lkchaos.target import reach

    monkeypatch.setattr(reach, "TIMEOUT_S", 0.5)
    (found,) = reach.master_name_checks(Settings(sentinel_addresses=(listener,)))
    assert not found.ok
    assert found.detail.startswith(f"{listener} accepts connections but gave no answer "
                                   "within 0.5 s: paused or hung")


def test_a_toxiproxy_api_and_a_prober_that_accept_and_never_answer_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str, listener: str,
    tls_proxy: str, resolver: str,
) -> None:
    # A paused Toxiproxy or prober still accepts connections; asked, it answers nothing.
    from lkchaos.target import reach

    monkeypatch.setattr(reach, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("LK_KEY", "k")
    path = _target(tmp_path, http_url, listener, tls_proxy, resolver)
    path.write_text(path.read_text() + f"toxiproxy: {{api_url: \"http://{listener}\"}}\n"
                    f"voice: {{prober_url: \"http://{listener}\"}}\n")
    out = CliRunner().invoke(target_cli, ["check", "--target", str(path)]).output
    assert f"FAIL  toxiproxy API: http://{listener}/version did not answer" in out, out
    assert f"FAIL  voice prober: http://{listener}/health did not answer" in out, out


def test_a_tls_proxy_or_resolver_that_accepts_and_never_answers_fails(
    listener: str, http_url: str, tmp_path: Path,
) -> None:
    # A paused Caddy or dnsmasq still accepts connections (the kernel does): a run's TLS
    # handshakes and DNS queries get nothing. Asked as a run asks, each fails, and says why.
    from lkchaos.target import reach

    hung = reach.tls_handshake("tls_proxy", "tls proxy", listener, "rtc.example.org", 0.5)
    assert not hung.ok
    assert hung.detail.startswith(f"{listener} accepts connections but completed no TLS "
                                  "handshake for rtc.example.org within 0.5 s: paused or hung")
    plain = http_url.removeprefix("http://")
    no_tls = reach.tls_handshake("tls_proxy", "tls proxy", plain, "rtc.example.org", 0.5)
    assert not no_tls.ok and no_tls.detail.startswith(
        f"{plain} accepts connections but no TLS handshake for rtc.example.org completed (")
    assert no_tls.detail.endswith("): is this the proxy's TLS port, and does it serve "
                                  "rtc.example.org?")
    silent = LocalDNS({}, silent={"rtc.example.org"})
    try:
        quiet = reach.dns_query("resolver", "resolver", silent.address, "rtc.example.org", 0.5)
        unknown = reach.dns_query("resolver", "resolver", silent.address, "other.example", 0.5)
    finally:
        silent.close()
    assert not quiet.ok and "gave no DNS answer over UDP for rtc.example.org" in quiet.detail
    assert unknown.ok and unknown.detail.startswith(f"{silent.address} answered NXDOMAIN")
    nowhere = reach.dns_query("resolver", "resolver", "no-such-host.invalid:53", "x", 0.5)
    assert not nowhere.ok and "its host name does not resolve here" in nowhere.detail
