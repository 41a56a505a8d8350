"""The target file: its schema's errors with lines, secrets by reference, the selection order,
and the reference target's equivalence with today's default Settings."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from chaoslib.exceptions import ActivityFailed
from click.testing import CliRunner
from pydantic import ValidationError

from lkchaos.errors import ConfigError
from lkchaos.settings import Settings
from lkchaos.target import (
    SecretRef,
    SecretUnavailable,
    Target,
    TargetInvalid,
    check_target,
    load_target,
    select_target,
    settings_values,
)
from lkchaos.target import secrets as target_secrets
from lkchaos.target.cli import target as target_cli
from lkchaos.values import check_service_name
from tests.unit.bad_files import assert_refused_at_its_line

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "targets"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
REFERENCE = ROOT / "stack" / "targets" / "reference.yaml"
MINIMAL = FIXTURES / "minimal.yaml"
SECRET = "s3cr3t-value-never-shown"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_is_refused_with_its_line(path: Path) -> None:
    result = CliRunner().invoke(target_cli, ["check", "--offline", "--target", str(path)])
    assert result.exit_code == 2, result.output
    assert_refused_at_its_line(path, result.output)


def test_corpus_is_broad() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("name", ["inline-secret.yaml", "inline-redis-password.yaml"])
def test_inline_secret_is_never_echoed(name: str) -> None:
    path = FIXTURES / "bad" / name
    value = re.search(r"(?:api_key|password_ref): ([^{\s]\S*)", path.read_text())
    assert value is not None
    _, problems = check_target(path)
    assert problems and all(value[1] not in str(problem) for problem in problems)
    with pytest.raises(TargetInvalid) as caught:
        load_target(path)
    assert value[1] not in str(caught.value)


def test_model_errors_hide_their_input() -> None:
    data = {"livekit": {"url": "wss://a.b", "nodes": [], "api_key": SECRET,
                        "api_secret": {"env": "S"}}}  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        Target.model_validate(data)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("name", ["a", "livekit-1", "redis_primary.2", "A" * 128, "a" * 129,
                                  "", "-x", ".x", "live kit", "a:1", "a\nb", "prox\u00ff"])
def test_runtime_names_follow_the_argument_rule(name: str) -> None:
    """A runtime name the target accepts is one every activity argument accepts, and back."""
    data = yaml.safe_load(MINIMAL.read_text())
    data["roles"]["agent_worker"] = name
    try:
        Target.model_validate(data)
        in_target = True
    except ValidationError as exc:
        assert "is not a runtime name" in str(exc)
        in_target = False
    try:
        check_service_name("service", name)
        as_argument = True
    except ActivityFailed:
        as_argument = False
    assert in_target == as_argument == (0 < len(name) <= 128 and name[0].isalnum()
                                        and " " not in name and ":" not in name
                                        and name.isascii() and "\n" not in name)


@pytest.mark.parametrize(("address", "valid"), [
    ("127.0.0.1:1", True), ("redis:65535", True), ("[::1]:6379", True),
    ("127.0.0.1:0", False), ("127.0.0.1:65536", False), ("127.0.0.1:99999", False)])
def test_address_ports_are_1_to_65535(address: str, valid: bool) -> None:
    data = yaml.safe_load(MINIMAL.read_text())
    data["redis"]["direct"]["primary"] = address
    data["livekit"]["nodes"][0]["url"] = f"http://{address}"
    if valid:
        Target.model_validate(data)
        return
    with pytest.raises(ValidationError) as caught:
        Target.model_validate(data)
    assert [error["loc"] for error in caught.value.errors()] == [
        ("livekit", "nodes", 0, "url"), ("redis", "direct", "primary")]


def test_roles_in_the_nodes_order_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    text = REFERENCE.read_text()
    assert "livekit_node: [livekit-1, livekit-2]" in text
    path.write_text(text)
    assert check_target(path)[1] == []
    path.write_text(text.replace("[livekit-1, livekit-2]", "[livekit-2, livekit-1]"))
    assert [problem.message.split(" (")[0] for problem in check_target(path)[1]] == [
        "list roles.livekit_node in the order of livekit.nodes: livekit-1, livekit-2"]


@pytest.mark.parametrize(("extra", "message"), [
    ("  speech_to_text: [a]\n", "roles.speech_to_text: write one runtime name: only livekit_node"),
    ("  sentinel: {a: b}\n", "roles.sentinel: write a list here"),
    ("  resolver: 53\n", "roles.resolver: write one text value here (quote a number"),
    ("  voice_prober: {name: p}\n", "roles.voice_prober: write one runtime name"),
    ("  tool_server: yes\n", "roles.tool_server: write one text value here (quote a number or"),
])  # fmt: skip
def test_type_problems_say_what_to_write(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(MINIMAL.read_text() + extra)
    problems = check_target(path)[1]
    assert [problem.message.startswith(message) for problem in problems] == [True]
    assert "Input should be" not in problems[0].message


@pytest.mark.parametrize("url", ["wss://203.0.113.10:7880", "wss://[2001:db8::10]:7880"])
def test_a_livekit_url_by_address_takes_the_domain_from_the_tls_names(
    url: str, tmp_path: Path,
) -> None:
    path = tmp_path / "by-address.yaml"
    path.write_text(MINIMAL.read_text().replace("wss://rtc.example.org", url))
    assert load_target(path).target.test_domain == "example.org"


def test_minimal_target_is_valid() -> None:
    loaded = load_target(MINIMAL)
    assert loaded.target.test_domain == "example.org"
    assert loaded.target.livekit_nodes == ["lk-server"]
    assert set(loaded.target.secret_refs()) == {
        "livekit.api_key", "livekit.api_secret", "redis.direct.password_ref"}


def test_secret_from_env_and_files(tmp_path: Path) -> None:
    (tmp_path / "keys.env").write_text(f"# keys\nexport LK_SECRET=\"{SECRET}\"\n")
    (tmp_path / "keys.yaml").write_text(f"token: {SECRET}\n")
    (tmp_path / "whole").write_text(f"{SECRET}\n")
    env = {"LK_KEY": SECRET}
    assert target_secrets.resolve(SecretRef(env="LK_KEY"), tmp_path, environ=env) == SECRET
    for ref in (SecretRef(file="keys.env", key="LK_SECRET"),
                SecretRef(file="keys.yaml", key="token"), SecretRef(file="whole"),
                SecretRef(file="{state_dir}/whole")):  # fmt: skip
        assert target_secrets.resolve(ref, tmp_path, state=tmp_path, environ={}) == SECRET
    assert SECRET not in repr(SecretRef(file="keys.env", key="LK_SECRET"))


def test_unresolvable_secret_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "keys.env").write_text(f"OTHER={SECRET}\n")
    with pytest.raises(SecretUnavailable, match="LK_KEY is not set or empty; export it"):
        target_secrets.resolve(SecretRef(env="LK_KEY"), tmp_path, environ={})
    with pytest.raises(SecretUnavailable, match="has no non-empty LK_SECRET") as caught:
        target_secrets.resolve(SecretRef(file="keys.env", key="LK_SECRET"), tmp_path)
    assert SECRET not in str(caught.value)
    with pytest.raises(SecretUnavailable, match="cannot read"):
        target_secrets.resolve(SecretRef(file="absent.env", key="X"), tmp_path)


def test_show_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "target.yaml"
    target.write_text(MINIMAL.read_text())
    (tmp_path / "keys.env").write_text(f"LK_SECRET={SECRET}\n")
    monkeypatch.setenv("LK_KEY", SECRET)
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    result = CliRunner().invoke(target_cli, ["show", "--target", str(target)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "livekit.api_key: env LK_KEY -> ***" in result.output
    assert "livekit_api_secret: ***" in result.output


# -- selection order ---------------------------------------------------------------------


def test_selection_order(tmp_path: Path) -> None:
    flag, env, conf = tmp_path / "flag.yaml", tmp_path / "env.yaml", tmp_path / "conf.yaml"
    environ = {"LKCHAOS_TARGET": str(env)}
    configuration = {"lkchaos_target": str(conf)}
    chosen = select_target(str(flag), configuration, environ)
    assert (chosen.path, chosen.source) == (flag, "flag")
    chosen = select_target(None, configuration, environ)
    assert (chosen.path, chosen.source) == (env, "environment")
    chosen = select_target(None, configuration, {"LKCHAOS_TARGET": ""})
    assert (chosen.path, chosen.source) == (conf, "configuration")
    chosen = select_target(None, {}, {})
    assert (chosen.path, chosen.source) == (REFERENCE, "reference")


def test_reference_follows_lkchaos_root(tmp_path: Path) -> None:
    own = tmp_path / "stack" / "targets" / "reference.yaml"
    own.parent.mkdir(parents=True)
    own.write_text(REFERENCE.read_text())
    assert select_target(None, None, {"LKCHAOS_ROOT": str(tmp_path)}).path == own


def test_no_target_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lkchaos.target.select.reference_target", lambda environ=None: None)
    with pytest.raises(ConfigError, match="pass --target FILE, set LKCHAOS_TARGET"):
        select_target(None, None, {})


# -- equivalence with today's Settings ---------------------------------------------------

_STATE_FIELDS = {"livekit_api_key", "livekit_api_secret", "ca_file", "state_dir", "target_dir",
                 "keys_problem", "redis_password", "redis_password_problem",
                 "redis_password_source", "sentinel_password", "sentinel_password_problem",
                 "sentinel_password_source"}


def test_reference_target_gives_the_default_settings() -> None:
    values = settings_values(load_target(REFERENCE), resolve_secrets=False)
    defaults = Settings()
    expected = {f.name: getattr(defaults, f.name) for f in fields(Settings)
                if f.name not in _STATE_FIELDS}  # fmt: skip
    assert {key: values[key] for key in expected} == expected
    assert set(values) == set(expected) | {"ca_file"}


def test_reference_target_equals_settings_load(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("LKCHAOS_", "LIVEKIT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    (tmp_path / "stack.env").write_text(f"LIVEKIT_API_KEY=APIkey\nLIVEKIT_API_SECRET={SECRET}\n")
    loaded = Settings.load({}, {})
    from_target = Settings(**settings_values(load_target(REFERENCE)), state_dir=loaded.state_dir)
    assert from_target == loaded
    assert from_target.livekit_api_secret == SECRET


def test_minimal_target_settings_name_nothing_of_the_reference() -> None:
    values = settings_values(load_target(MINIMAL), resolve_secrets=False)
    assert values["sentinel_addresses"] == () and values["sentinel_master"] == ""
    assert values["toxiproxy_url"] == "" and values["dns_server"] == ""
    assert values["compose_project"] == "" and "agent_name" not in values
    assert values["tls_address"] == "127.0.0.1:443"


def test_problems_across_fields_are_said_with_the_schemas_at_once(tmp_path: Path) -> None:
    # Two nodes of the same name and a prober that is the agent were said only after the
    # schema's problem elsewhere (a misspelt key) was corrected: a second round trip.
    data = yaml.safe_load(REFERENCE.read_text())
    data["livekit"]["nodes"][1]["name"] = data["livekit"]["nodes"][0]["name"]
    data["roles"]["voice_prober"] = data["roles"]["agent_worker"]
    data["redis"]["sentinel"]["master_nam"] = "x"  # not a key of the schema
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    messages = [problem.message for problem in check_target(path)[1]]
    assert any("master_nam" in m for m in messages), messages
    assert any("is used twice" in m for m in messages), messages
    assert any("cannot also be the agent worker" in m for m in messages), messages
