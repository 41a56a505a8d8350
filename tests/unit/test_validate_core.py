"""The validate runner, selection, exit codes, probe and watch, with checks written here.

The checks are plain functions given to :func:`runner.run` for real item ids; the runner's
threads, timeouts and roll-up are the real ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.settings import Settings
from lkchaos.validate import manual, probes, runner, selection, watch
from lkchaos.validate.model import CHECKS, Context, Finding, alone, early, items

CPU, RAM, DISK = "infra.minimum-4-cpu", "infra.minimum-8gb-ram", "infra.minimum-50gb-disk"
FIREWALL = "infra.firewall-rules-configured"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=str(tmp_path))


def passing(ctx: Context) -> Finding:
    return Finding("pass", "fine")


def failing(ctx: Context) -> Finding:
    return Finding("fail", "3 short")


# Selection -------------------------------------------------------------------------------


def test_every_item_in_the_document_order_by_default() -> None:
    assert [i.id for i in selection.select()] == [i.id for i in items()]


def test_a_section_by_title_group_title_or_group_id() -> None:
    by_id = selection.select(section="tls")
    assert by_id and all(i.id.startswith("tls.") for i in by_id)
    assert selection.select(section="SSL/TLS Validation Checklist") == by_id
    security = selection.select(section="security validation")
    assert {i.id.split(".")[0] for i in security} == {"auth", "vuln"}


def test_only_and_skip_take_prefixes_repeated_or_comma_separated() -> None:
    chosen = selection.select(only=[f"{CPU},{FIREWALL}"], skip=[f"{FIREWALL}.port-443"])
    ids = [i.id for i in chosen]
    assert ids[0] == FIREWALL and CPU in ids
    assert f"{FIREWALL}.port-7880" in ids and f"{FIREWALL}.port-443" not in ids
    # a prefix stops at a dot: "infra.minimum-4" is not a prefix of an id
    with pytest.raises(selection.SelectionError, match="infra.minimum-4"):
        selection.select(only=["infra.minimum-4"])


def test_unknown_sections_and_ids_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(selection.SelectionError) as caught:
        selection.select(section=["tls", "nope"])
    message = str(caught.value)
    assert "nope" in message and "Security Validation (auth, vuln)" in message
    with pytest.raises(selection.SelectionError, match="tls.nope.*Ids start with a group id"):
        selection.select(skip="tls.nope")


@pytest.mark.parametrize("given", [
    {"only": [""]}, {"only": " "}, {"section": [","]}, {"skip": ["", " "]},
    {"section": "", "only": "tls"},
])  # fmt: skip
def test_an_option_given_empty_is_refused_not_read_as_every_item(given: dict[str, Any]) -> None:
    # `--only "$ITEMS"` with ITEMS unset must not start the whole, intrusive checklist.
    with pytest.raises(selection.SelectionError, match="given but naming nothing"):
        selection.select(**given)


def test_a_selection_that_leaves_nothing_is_refused() -> None:
    # A gate that checked nothing must not pass.
    with pytest.raises(selection.SelectionError, match="leaves no item to check"):
        selection.select(only="tls", skip="tls")
    with pytest.raises(selection.SelectionError, match="leaves no item to check"):
        selection.select(section="tls", only="redis")


def test_the_cli_refuses_an_empty_selection_before_anything_runs() -> None:
    from click.testing import CliRunner

    from lkchaos.cli import main

    for args in (["--only", ""], ["--only", "tls", "--skip", "tls"], ["--every", "5m"]):
        done = CliRunner().invoke(main, ["validate", *args])
        assert done.exit_code == 2, (args, done.output)
        assert "Traceback" not in done.output


def test_a_deployment_whose_nodes_do_not_answer_is_not_checked_item_by_item(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    # Every item would wait out its own timeout (minutes against a hung deployment), then be
    # in error: said once, exit 2, as the help says for a target not reachable at all.
    from click.testing import CliRunner

    from lkchaos.cli import main
    from tests.unit.livekit_dev import free_port

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LKCHAOS_LIVEKIT_NODE_URLS", url)
    report = tmp_path / "report.json"
    done = CliRunner().invoke(main, ["validate", "--no-history", "--json", str(report)])
    assert done.exit_code == 2, done.output
    assert f"the deployment is down: no LiveKit node answers ({url}: " in done.output
    assert "nothing was checked" in done.output
    assert not report.exists()


# Runner ----------------------------------------------------------------------------------


def test_items_without_a_check_are_manual_with_an_instruction(settings: Settings) -> None:
    chosen = selection.select(only=[CPU, "signoff-business", "docs.api-documentation-complete"])
    report = runner.run(chosen, settings, checks={CPU: failing})
    by_id = {r.item.id: r for r in report.results}
    assert by_id[CPU].status == "fail" and by_id[CPU].automated
    manual_items = [r for r in report.results if r.item.id != CPU]
    assert manual_items and all(r.status == "manual" and not r.automated for r in manual_items)
    assert by_id["signoff-business.qa-team-testing"].evidence == manual.BY_GROUP[
        "signoff-business"]
    assert [r.item.id for r in report.results] == [i.id for i in chosen]


def test_an_exception_is_an_error_with_its_message(settings: Settings) -> None:
    def broken(ctx: Context) -> Finding:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    def wrong(ctx: Context) -> Finding:
        return "pass"  # type: ignore[return-value]

    report = runner.run(selection.select(only=[CPU, RAM]), settings,
                        checks={CPU: broken, RAM: wrong})  # fmt: skip
    cpu, ram = report.results
    assert (cpu.status, cpu.evidence) == ("error", "ConnectionRefusedError: [Errno 111] "
                                                   "Connection refused")
    assert ram.status == "error" and "returned str, not a Finding" in ram.evidence


def test_no_token_or_secret_reaches_the_report(tmp_path: Path) -> None:
    # An error quoting the join URL (as aiohttp's handshake error does) held a working access
    # token; a check's data may quote the target's secret. The report carries neither.
    import json

    from lkchaos.livekit.client import access_token

    secret = "a-secret-of-the-target-0123456789"
    settings = Settings(state_dir=str(tmp_path), livekit_api_key="APIkey",
                        livekit_api_secret=secret)  # fmt: skip
    token = access_token(settings, "lkchaos-validate-signal", "room-a", ttl_seconds=120)

    def refused(ctx: Context) -> Finding:
        raise ConnectionError(f"503, message='Invalid response status', "
                              f"url='ws://127.0.0.1:7880/rtc?access_token={token}&protocol=16'")

    def quoting(ctx: Context) -> Finding:
        return Finding("fail", f"LIVEKIT_API_SECRET={secret} in the environment",
                       {"seen": [f"Bearer {token}"], "ok": 1})

    report = runner.run(selection.select(only=[CPU, RAM]), settings,
                        checks={CPU: refused, RAM: quoting})  # fmt: skip
    written = json.dumps(report.as_dict())
    assert token not in written and secret not in written
    cpu, ram = report.results
    assert cpu.evidence.endswith("url='ws://127.0.0.1:7880/rtc?access_token=***&protocol=16'")
    assert ram.evidence == "LIVEKIT_API_SECRET=*** in the environment"
    assert ram.data == {"seen": ["Bearer ***"], "ok": 1}


def test_a_check_that_overruns_is_an_error_and_does_not_hold_the_run(
        settings: Settings) -> None:  # fmt: skip
    release = threading.Event()

    def stuck(ctx: Context) -> Finding:
        release.wait(30)
        return Finding("pass", "too late")

    try:
        report = runner.run(selection.select(only=[CPU, RAM]), settings, timeout_s=0.2,
                            grace_s=0.1, checks={CPU: stuck, RAM: passing})  # fmt: skip
    finally:
        release.set()
    cpu, ram = report.results
    assert (cpu.status, cpu.evidence) == ("error", "did not finish within 0.3 s")
    assert ram.status == "pass"


def test_checks_run_together_up_to_the_bound(settings: Settings) -> None:
    # Two checks that each wait for the other finish only if both run at once.
    both = threading.Barrier(2, timeout=10)

    def meet(ctx: Context) -> Finding:
        both.wait()
        return Finding("pass", "met")

    def meet_too(ctx: Context) -> Finding:
        return meet(ctx)

    report = runner.run(selection.select(only=[CPU, RAM]), settings, workers=2,
                        checks={CPU: meet, RAM: meet_too})  # fmt: skip
    assert [r.status for r in report.results] == ["pass", "pass"]


def test_no_more_checks_run_at_once_than_workers(settings: Settings) -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def counted(ctx: Context) -> Finding:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return Finding("pass", "counted")

    ids = [i.id for i in selection.select(section="startup")][:6]
    funcs = {}
    for item_id in ids:  # distinct functions: a shared one would run once
        funcs[item_id] = lambda ctx, f=counted: f(ctx)
    report = runner.run(selection.select(only=ids), settings, workers=2, checks=funcs)
    assert all(r.status == "pass" for r in report.results)
    assert 1 <= state["most"] <= 2


def test_a_check_that_measures_latency_runs_after_the_others_by_itself(
    settings: Settings
) -> None:
    lock = threading.Lock()
    state = {"now": 0, "alone_saw": -1, "others_done": 0}

    def other(ctx: Context) -> Finding:
        with lock:
            state["now"] += 1
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
            state["others_done"] += 1
        return Finding("pass", "other")

    @alone
    def timed(ctx: Context) -> Finding:
        with lock:
            state["alone_saw"] = state["now"] + state["others_done"] * 100
        return Finding("pass", "timed")

    ids = [i.id for i in selection.select(section="startup")][:5]
    funcs = {item_id: (lambda ctx, f=other: f(ctx)) for item_id in ids[1:]}
    funcs[ids[0]] = timed  # first in the document's order, yet run last
    report = runner.run(selection.select(only=ids), settings, workers=4, checks=funcs)
    assert all(r.status == "pass" for r in report.results)
    assert state["alone_saw"] == 400  # the four others done, none running
    assert [r.item.id for r in report.results] == ids  # reported in the document's order


def test_checks_marked_early_start_first_and_results_keep_the_documents_order(
    settings: Settings
) -> None:
    started: list[str] = []

    def named(name: str) -> Any:
        def run(ctx: Context) -> Finding:
            started.append(name)
            return Finding("pass", name)

        return run

    ids = [i.id for i in selection.select(section="startup")][:5]
    funcs = {item_id: named(f"item{n}") for n, item_id in enumerate(ids)}
    early(funcs[ids[3]])
    early(funcs[ids[1]])
    report = runner.run(selection.select(only=ids), settings, workers=1, checks=funcs)
    # The early ones first, each group in the document's order.
    assert started == ["item1", "item3", "item0", "item2", "item4"]
    assert [r.item.id for r in report.results] == ids
    assert [r.evidence for r in report.results] == [f"item{n}" for n in range(5)]


def test_the_checks_that_start_shared_slow_work_are_marked_early() -> None:
    # One per shared fact the run waits seconds on: the media session, the port scan, media
    # to every node's RTC UDP port.
    runner.load_checks()
    marked = sorted(i for i, f in CHECKS.items() if getattr(f, "starts_early", False))
    assert marked == ["infra.firewall-rules-configured.ports-50000",
                      "livekit.participant-joins-successful", "vuln.port-scan-results"]


def test_the_checks_that_publish_through_ingress_or_time_a_reply_run_alone() -> None:
    # Ingress admits a publish only while its host has idle CPU; a latency measured beside
    # the run's other checks measures them. Every check that publishes (or reads what a
    # publish left, the webhooks) runs after the others, one at a time.
    runner.load_checks()
    marked = sorted(i for i, f in CHECKS.items() if getattr(f, "runs_alone", False))
    assert marked == ["ingress-egress.authentication-working",
                      "ingress-egress.ice-candidate-handling",
                      "ingress-egress.media-streaming-working",
                      "ingress-egress.rtmp-streams-accepted",
                      "ingress-egress.sdp-negotiation-successful",
                      "ingress-egress.stream-forwarding-livekit",
                      "ingress-egress.webhook-notifications-sent",
                      "ingress-egress.whip-endpoint-accessible",
                      "livekit.response-times-200ms"]


def test_a_check_registered_for_several_items_runs_once(settings: Settings) -> None:
    calls: list[int] = []

    def shared(ctx: Context) -> Finding:
        calls.append(1)
        return Finding("warn", "one finding for both")

    report = runner.run(selection.select(only=[CPU, RAM]), settings,
                        checks={CPU: shared, RAM: shared})  # fmt: skip
    assert len(calls) == 1
    assert [(r.status, r.evidence) for r in report.results] == [("warn", "one finding for "
                                                                 "both")] * 2


def test_a_fact_is_computed_once_for_the_checks_of_a_run(settings: Settings) -> None:
    computed: list[int] = []

    def slow() -> int:
        computed.append(1)
        time.sleep(0.05)
        return 42

    def one(ctx: Context) -> Finding:
        return Finding("pass", str(ctx.fact("answer", slow)))

    def two(ctx: Context) -> Finding:
        return Finding("pass", str(ctx.fact("answer", slow)))

    report = runner.run(selection.select(only=[CPU, RAM]), settings, checks={CPU: one, RAM: two})
    assert [r.evidence for r in report.results] == ["42", "42"] and computed == [1]


def test_a_parent_takes_the_worst_of_its_children(settings: Settings) -> None:
    chosen = selection.select(only=[FIREWALL])
    kids = [i.id for i in chosen if i.parent == FIREWALL]
    checks = {kid: passing for kid in kids}
    checks[kids[2]] = failing
    report = runner.run(chosen, settings, checks=checks)
    parent = report.results[0]
    assert parent.item.id == FIREWALL and parent.status == "fail" and parent.automated
    assert parent.evidence == (f"worst of its {len(kids)} items ({len(kids) - 1} pass, 1 fail);"
                               f" fail: {kids[2].rsplit('.', 1)[1]}")
    all_pass = runner.run(chosen, settings, checks=dict.fromkeys(kids, passing))
    assert all_pass.results[0].status == "pass"


def test_exit_codes(settings: Settings) -> None:
    chosen = selection.select(only=[CPU, RAM, "docs"])

    def code(**checks: object) -> int:
        return runner.run(chosen, settings, checks=checks).exit_code()  # type: ignore[arg-type]

    def warn(ctx: Context) -> Finding:
        return Finding("warn", "close")

    def error(ctx: Context) -> Finding:
        raise TimeoutError("no answer")

    assert code(**{CPU: passing, RAM: warn}) == 0
    assert code(**{CPU: failing, RAM: passing}) == 1
    assert code(**{CPU: error, RAM: passing}) == 1
    assert code(**{CPU: error, RAM: error}) == 2  # nothing could be checked
    assert runner.run(selection.select(only="docs"), settings, checks={}).exit_code() == 0


def test_the_check_modules_are_found_in_the_package() -> None:
    assert runner.load_checks() == []
    assert CHECKS["infra.minimum-4-cpu"].__module__ == "lkchaos.validate.checks.host"
    assert CHECKS["startup.containers-show-healthy"].__module__ == (
        "lkchaos.validate.checks.containers")


# Probe -----------------------------------------------------------------------------------


def test_the_probe_returns_the_checklist_state(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:  # fmt: skip
    # No engine: the host items measure this machine.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    # Its run window goes to this test's state folder, never the checkout's.
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    result = probes.checklist(only=[RAM, "docs"], timeout=10)
    assert (tmp_path / "state" / "validate-runs.jsonl").is_file()
    assert result["counts"]["manual"] == 0  # items no program checks are left out
    [item] = result["items"]
    assert item["id"] == RAM and "of memory on this machine" in item["evidence"]
    memory_gib = Path("/proc/meminfo").read_text().split()[1]
    enough = int(memory_gib) * 1024 >= 8 * 1024**3
    assert result["ok"] is enough
    assert (result["failed"] == []) is enough


def test_the_probe_refuses_bad_arguments() -> None:
    with pytest.raises(ActivityFailed, match="section: unknown section"):
        probes.checklist(section=["nope"])
    with pytest.raises(ActivityFailed, match="timeout must be"):
        probes.checklist(timeout=0)
    with pytest.raises(ActivityFailed, match="only must be a list of strings"):
        probes.checklist(only=[3])  # type: ignore[list-item]


# Watch -----------------------------------------------------------------------------------


def test_watch_reports_changes_and_stability_and_ends_cleanly_on_ctrl_c(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    outcomes = iter(["pass", "fail", "fail", "pass", "fail"])
    current = {"status": "pass"}

    def flaky(ctx: Context) -> Finding:
        return Finding(current["status"], current["status"])  # type: ignore[arg-type]

    real_run = runner.run

    def run_with(*args: object, **kwargs: object) -> runner.Report:
        current["status"] = next(outcomes)
        return real_run(*args, **kwargs, checks={CPU: flaky, RAM: passing})  # type: ignore

    monkeypatch.setattr(watch, "run", run_with)
    seen: list[list[str]] = []
    sleeps = iter([None, None, None, KeyboardInterrupt()])

    def sleep(seconds: float) -> None:
        value = next(sleeps)
        if isinstance(value, BaseException):
            raise value

    rounds, interrupted = watch.watch(
        selection.select(only=[CPU, RAM, "docs"]), settings, duration_s=3600, every_s=1,
        timeout_s=5, on_round=lambda i, r, ch: seen.append([str(c) for c in ch]), sleep=sleep)
    assert interrupted and len(rounds) == 4
    assert [r.item.id for r in rounds[0].results] == [CPU, RAM]  # automated items only
    assert seen[1] == [f"{CPU}: pass -> fail (fail)"] and seen[2] == []
    assert seen[3] == [f"{CPU}: fail -> pass (pass)"]
    cpu, ram = watch.stability(rounds)
    assert (cpu.bad_rounds, cpu.changes, cpu.flapping, cpu.last_status) == (2, 2, True, "pass")
    assert cpu.first_bad == rounds[1].started_at and cpu.last_bad == rounds[2].started_at
    assert cpu.bad_s == pytest.approx((rounds[3].started_at - rounds[1].started_at).total_seconds())
    assert (ram.bad_rounds, ram.flapping) == (0, False)
    lines = watch.stability_lines([cpu, ram], rounds, interrupted=True)
    assert "(stopped early)" in lines[0] and lines[1] == "held every round: 1 of 2 items"
    assert lines[2].startswith(f"{CPU}: bad in 2 of 4 rounds") and "flapping" in lines[2]


def test_watch_is_bounded_by_its_duration(settings: Settings, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    slept: list[float] = []
    rounds, interrupted = watch.watch(selection.select(only=[CPU]), settings, duration_s=2,
                                      every_s=1, timeout_s=5, on_round=lambda *a: None,
                                      sleep=slept.append)  # fmt: skip
    assert not interrupted and len(rounds) == 3 and len(slept) <= 2


def test_the_public_api() -> None:
    import lkchaos.validate as validate

    assert sorted(validate.__all__) == ["Context", "Finding", "Item", "ItemResult", "Report",
                                        "STATUSES", "SelectionError", "Status", "check",
                                        "items", "run", "select"]
    assert all(hasattr(validate, name) for name in validate.__all__)


def test_lkchaos_check_refuses_a_bad_checklist_probe(tmp_path: Path) -> None:
    import json

    from lkchaos.preflight import check_file, errors

    experiment = {
        "title": "the checklist holds", "description": "steady state",
        "steady-state-hypothesis": {"title": "holds", "probes": [{
            "type": "probe", "name": "tls-holds",
            "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True},
            "provider": {"type": "python", "module": "lkchaos.validate.probes",
                         "func": "checklist", "arguments": {"section": ["tsl"], "timeout": 20}},
        }]},
        "method": [{"type": "action", "name": "nothing",
                    "provider": {"type": "process", "path": "true"}}],
    }  # fmt: skip
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment))
    [problem] = errors(check_file(str(path), offline=True))
    assert "argument 'section'" in str(problem) and "unknown section(s): tsl" in str(problem)
    experiment["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"] = {  # type: ignore[index]
        "section": ["tls"], "timeout": 20}
    path.write_text(json.dumps(experiment))
    assert errors(check_file(str(path), offline=True)) == []


def test_a_run_leaves_its_window_for_later_runs_to_set_apart(tmp_path: Path) -> None:
    from lkchaos.validate import runner

    runner.remember_run(str(tmp_path), 100.0, 130.5)
    (tmp_path / runner.RUNS_FILE).write_text(
        (tmp_path / runner.RUNS_FILE).read_text() + "not json\n")
    runner.remember_run(str(tmp_path), 200.0, 210.0)
    assert runner.run_windows(str(tmp_path)) == [(100.0, 130.5), (200.0, 210.0)]
    assert runner.run_windows("") == [] and runner.run_windows(str(tmp_path / "no")) == []
    runner.remember_run(str(tmp_path / "missing" / "dir"), 1.0, 2.0)  # skipped, no error
