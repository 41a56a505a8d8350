"""The audit log, the secret scanner, private key files and the run lock under a race."""

from __future__ import annotations

import base64
import datetime as dt
import json
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from lkchaos import certs
from lkchaos.cli import main
from lkchaos.errors import ConfigError
from lkchaos.safety import audit, ledger, runlock
from lkchaos.safety.secrets import forms_of, scan
from lkchaos.stack import render

SECRET = "Zq8-xY_secret-VALUE-0123456789abcdefXYZ"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(state))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    monkeypatch.delenv(ledger.RUN_ID_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ledger, "UNDO_MODULE_PREFIX", "tests.")
    return state


def _fault(target: str = "agent", **undo: Any) -> ledger.Fault:
    return ledger.Fault("paused", target, "tests.unit.chaos_helpers", "append",
                        {"path": "/dev/null", "line": "x", **undo})


# -- masking ------------------------------------------------------------------------------

def test_mask_hides_secret_keys_and_secret_values() -> None:
    masked = audit.mask({
        "service": "agent", "api_key": "k1", "password": "p", "LIVEKIT_API_SECRET": "s",
        "auth_token": "t", "nested": {"url": f"wss://x?access_token={SECRET}", "n": 3,
                                      "items": [SECRET, "plain"]},
        "empty_key": "",
    }, [SECRET])
    assert masked == {
        "service": "agent", "api_key": "***", "password": "***", "LIVEKIT_API_SECRET": "***",
        "auth_token": "***", "nested": {"url": "wss://x?access_token=***", "n": 3,
                                        "items": ["***", "plain"]},
        "empty_key": "",
    }


def test_signed_tokens_are_masked_without_being_registered() -> None:
    # LiveKit's access tokens are minted at run time: no list of secrets holds them.
    from lkchaos.livekit.client import access_token
    from lkchaos.settings import Settings

    token = access_token(Settings(livekit_api_key="k", livekit_api_secret="s" * 32),
                         "someone", "room", ttl_seconds=60)  # fmt: skip
    assert audit.scrub(f"url=wss://x/rtc?access_token={token}&p=1", []) == \
        "url=wss://x/rtc?access_token=***&p=1"
    assert audit.scrub({"h": [f"Bearer {token}"], "n": 2}, []) == {"h": ["Bearer ***"], "n": 2}
    assert audit.scrub("eyJ is not a token, nor is eyJabc.eyJdef", []) == \
        "eyJ is not a token, nor is eyJabc.eyJdef"


def test_known_secrets_come_from_the_environment_and_the_stack(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolated.mkdir(parents=True)
    (isolated / "stack.env").write_text("LIVEKIT_API_KEY=k\nLIVEKIT_API_SECRET=stack-secret-1234\n")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "env-secret-5678")
    assert {"stack-secret-1234", "env-secret-5678"} <= audit.known_secrets(isolated)
    monkeypatch.setenv("LIVEKIT_API_SECRET", "short")
    assert "short" not in audit.known_secrets(isolated)


# -- the log ------------------------------------------------------------------------------

def test_record_forget_and_undo_are_audited_privately(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setitem(ledger._deployment, "path", "/srv/lk/target.yaml")
    ledger.begin_run("my experiment", "run-1")
    try:
        audit.set_activity("pause-agent", {"service": "agent", "token": "abc",
                                           "note": f"with {SECRET}"})
        fault = ledger.record(isolated, _fault(token="xyz"))
        audit.clear_activity()
        ledger.record(isolated, _fault("mcp"))
    finally:
        ledger.end_run()
    assert fault.run_id == "run-1" and fault.experiment == "my experiment"
    assert ledger.forget(isolated, "paused", "agent") == 1
    ledger.undo_all(isolated)
    path = audit.audit_path(isolated)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in path.read_text()
    first, second, third, fourth = audit.read(isolated)
    assert [e["outcome"] for e in (first, second, third, fourth)] == [
        "injected", "injected", "undone", "undone"]
    assert first["activity"] == "pause-agent"
    assert first["arguments"] == {"service": "agent", "token": "***", "note": "with ***"}
    assert first["undo"]["arguments"]["token"] == "***"
    assert first["run"] == "run-1" and first["experiment"] == "my experiment"
    assert first["user"] and first["host"] and first["pid"] == os.getpid()
    assert second["activity"] is None and third["target"] == "agent"
    assert fourth["target"] == "mcp"
    # Each names the target file it was made on: deployments may share the state folder.
    assert {e["deployment"] for e in (first, second, third, fourth)} == {"/srv/lk/target.yaml"}


def test_the_log_is_appended_never_rewritten(isolated: Path) -> None:
    ledger.record(isolated, _fault())
    path = audit.audit_path(isolated)
    before = path.read_bytes()
    ledger.forget(isolated, "paused", "agent")
    assert path.read_bytes().startswith(before)
    assert len(path.read_text().splitlines()) == 2


def test_an_unwritable_log_stops_the_fault_before_it_is_recorded(isolated: Path) -> None:
    isolated.mkdir(parents=True)
    audit.audit_path(isolated).mkdir()  # a folder where the file should be
    with pytest.raises(ConfigError, match="could not write the audit log"):
        ledger.record(isolated, _fault())
    assert ledger.pending(isolated) == []


def test_the_run_id_can_come_from_the_environment(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ledger.RUN_ID_ENV, "from-env")
    assert ledger.record(isolated, _fault()).run_id == "from-env"


def test_an_old_ledger_entry_still_loads(isolated: Path) -> None:
    isolated.mkdir(parents=True)
    ledger.ledger_path(isolated).write_text(json.dumps([{
        "kind": "paused", "target": "agent", "undo_module": "lkchaos.docker.actions",
        "undo_func": "unpause_service", "undo_arguments": {"service": "agent"},
        "id": "abc", "at": "2026-01-01T00:00:00+00:00", "pid": 1, "from_the_future": 1}]))
    (fault,) = ledger.pending(isolated)
    assert fault.run_id == "" and fault.attempts == 0


def test_parse_since() -> None:
    now = dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)
    assert audit.parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert audit.parse_since("2d", now) == now - dt.timedelta(days=2)
    assert audit.parse_since("2026-01-30", now) == dt.datetime(2026, 1, 30, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="30m, 2h, 7d"):
        audit.parse_since("yesterday", now)


def test_lkchaos_audit_prints_filters_and_speaks_json(isolated: Path) -> None:
    ledger.begin_run("exp A", "aaaa1111")
    ledger.record(isolated, _fault())
    ledger.begin_run("exp B", "bbbb2222")
    ledger.record(isolated, _fault("mcp"))
    ledger.end_run()
    runner = CliRunner()
    result = runner.invoke(main, ["audit"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and "injected" in lines[0] and "paused on agent" in lines[0]
    assert "exp A" in lines[0] and "aaaa1111" in lines[0]
    result = runner.invoke(main, ["audit", "--run", "bbbb", "--json"])
    (only,) = [json.loads(line) for line in result.output.splitlines()]
    assert only["target"] == "mcp" and only["experiment"] == "exp B"
    result = runner.invoke(main, ["audit", "--since", "1h"])
    assert len(result.output.splitlines()) == 2
    result = runner.invoke(main, ["audit", "--since", "soon"])
    assert result.exit_code == 2 and "30m" in result.output


def test_lkchaos_audit_names_the_target_file_of_each_fault(isolated: Path) -> None:
    ledger.begin_run("exp A", "aaaa1111")
    ledger.note_deployment("/srv/lk/target.yaml")
    try:
        ledger.record(isolated, _fault())
    finally:
        ledger.note_deployment("")
    ledger.record(isolated, _fault("mcp"))  # built-in defaults: no target file
    ledger.end_run()
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 0, result.output
    on_target, on_defaults = result.output.splitlines()
    assert "[exp A; target /srv/lk/target.yaml; " in on_target, on_target
    assert "target " not in on_defaults.split("[", 1)[1], on_defaults


def test_lines_that_are_not_entries_are_named_not_silently_skipped(isolated: Path) -> None:
    ledger.begin_run("exp A", "aaaa1111")
    ledger.record(isolated, _fault())
    ledger.end_run()
    path = audit.audit_path(isolated)
    with path.open("a") as log:
        log.write('{"truncated": \n{"foreign": "object"}\n\n')
    assert audit.unreadable(isolated) == [2, 3]
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 0, result.output
    assert "injected" in result.stdout and "foreign" not in result.stdout
    assert f"{path}: line(s) 2, 3 are not audit entries and were skipped" in result.stderr


# -- the secret scanner ---------------------------------------------------------------------

def test_scan_finds_the_secret_raw_and_encoded(tmp_path: Path) -> None:
    raw = SECRET.encode()
    folder = tmp_path / "run"
    (folder / "deep").mkdir(parents=True)
    (folder / "clean.json").write_text('{"ok": true}\n')
    (folder / "raw.log").write_text(f"line one\nkey={SECRET}\n")
    (folder / "deep" / "hex.txt").write_text(raw.hex().upper())
    (folder / "pct.txt").write_text(quote("x" + SECRET + "/y", safe=""))
    for pad in range(3):
        blob = base64.b64encode(b"A" * pad + b"prefix:" + raw + b":suffix")
        (folder / f"b64-{pad}.txt").write_bytes(blob)
        (folder / f"b64url-{pad}.txt").write_bytes(base64.urlsafe_b64encode(b"?>" * pad + raw))
    findings = scan([folder], SECRET)
    by_file = {Path(f.path).name: f for f in findings}
    assert "clean.json" not in by_file
    assert by_file["raw.log"].form == "raw" and by_file["raw.log"].line == 2
    assert by_file["hex.txt"].form == "HEX"
    assert set(by_file) >= {f"b64-{pad}.txt" for pad in range(3)}
    assert set(by_file) >= {f"b64url-{pad}.txt" for pad in range(3)}
    assert "pct.txt" in by_file
    assert str(by_file["raw.log"]).endswith("raw.log:2: the secret (raw)")


def test_scan_refuses_a_secret_too_short_to_mean_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        scan([tmp_path], "abc")


def test_forms_of_a_plain_secret_have_no_percent_form() -> None:
    assert "percent-encoded" not in forms_of("abcdefgh12345678")
    assert "raw" in forms_of("abcdefgh12345678")


# -- private key files ----------------------------------------------------------------------

def test_key_files_are_private_from_their_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_data: dict[str, int] = {}  # file name -> its mode before any byte was written
    real_fdopen = os.fdopen

    def spy_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        assert os.fstat(fd).st_size == 0
        before_data[name] = stat.S_IMODE(os.fstat(fd).st_mode)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", spy_fdopen)
    old_umask = os.umask(0)  # a permissive umask must not widen anything
    try:
        render.write_state(tmp_path, render.StackConfig(net_prefix="10.1.2"))
    finally:
        os.umask(old_umask)
    private = {n for n, mode in before_data.items() if mode == 0o600}
    names = render.StackConfig().tls_names
    assert {".stack.env.lkchaos-tmp", ".ca.key.lkchaos-tmp"} <= private
    assert {f".{name}.key.lkchaos-tmp" for name in names} <= private
    assert all(mode in (0o600, 0o644) for mode in before_data.values())
    for path in (tmp_path / "certs").glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (tmp_path / "certs").glob("*.crt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "stack.env").stat().st_mode) == 0o600


def test_an_existing_wide_key_file_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    key = tmp_path / "old.key"
    key.write_text("old")
    key.chmod(0o644)
    certs.replace_file(key, b"new", mode=certs.KEY_MODE)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_bytes() == b"new"


# -- the run lock under a race --------------------------------------------------------------

def _contend(state_dir: str, barrier: Any, done: Any, results: Any) -> None:
    barrier.wait()
    try:
        runlock.acquire(state_dir, f"runner {os.getpid()}")
    except runlock.LockHeld:
        results.put("refused")
        done.wait()
        return
    results.put("took")
    done.wait()  # hold it until every contender has tried
    runlock.release(state_dir)


@pytest.mark.parametrize("contenders", [2, 4])
def test_two_runners_started_together_never_both_take_the_lock(
    tmp_path: Path, contenders: int
) -> None:
    ctx = multiprocessing.get_context("fork")
    rounds = 30 if contenders == 2 else 40
    for round_ in range(rounds):
        state = tmp_path / f"state-{contenders}-{round_}"
        barrier, done = ctx.Barrier(contenders), ctx.Barrier(contenders)
        results = ctx.Queue()
        procs = [ctx.Process(target=_contend, args=(str(state), barrier, done, results))
                 for _ in range(contenders)]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=20) for _ in procs)
        for proc in procs:
            proc.join(timeout=20)
            assert proc.exitcode == 0
        assert outcomes == ["refused"] * (contenders - 1) + ["took"], (round_, outcomes)
        assert runlock.holder(state) is None


def test_the_lock_goes_with_a_killed_runner(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    state = tmp_path / "state"
    taken = ctx.Event()

    def hold() -> None:
        runlock.acquire(str(state), "doomed")
        taken.set()
        os.kill(os.getpid(), 9)

    proc = ctx.Process(target=hold)
    proc.start()
    assert taken.wait(10)
    proc.join(10)
    assert runlock.holder(state) is None
    assert runlock.acquire(state, "next") == "took over a stale lock left by a runner that is gone"
    runlock.release(state)
