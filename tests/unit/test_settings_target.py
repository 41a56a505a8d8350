"""Settings read the target in use below the configuration and the environment: the order of
precedence, no target outside a checkout, a bad target named explicitly, a second deployment's
target, and a target file parsed once per change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed
from click.testing import CliRunner

from lkchaos.cli import main
from lkchaos.errors import ConfigError
from lkchaos.settings import Settings
from lkchaos.target import layer, load, load_target, missing, select
from lkchaos.target.cli import target as target_cli
from lkchaos.toxiproxy import actions as toxiproxy_actions
from tests.unit.settings_env import clean_settings_env

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "stack" / "targets" / "reference.yaml"
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"
SECRET = "s3cr3t-value-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return clean_settings_env(monkeypatch, tmp_path, ("LK_KEY", "REDIS_PASSWORD"))


def no_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an installed package outside a checkout (or the prober's image): no reference."""
    monkeypatch.setattr(select, "reference_target", lambda environ=None: None)


def write_target(folder: Path, text: str) -> Path:
    path = folder / "target.yaml"
    path.write_text(MINIMAL.read_text().replace("wss://rtc.example.org", text))
    return path


# -- the order of precedence -------------------------------------------------------------


def test_configuration_beats_environment_beats_target_beats_default(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_TARGET", str(MINIMAL))
    # target over default: minimal names one node, direct Redis, no Toxiproxy
    s = Settings.load()
    assert s.livekit_url == "wss://rtc.example.org"
    assert s.livekit_node_urls == ("http://127.0.0.1:7880",)
    assert s.sentinel_addresses == () and s.redis_address_map == {}
    assert s.toxiproxy_url == "" and s.dns_server == "" and s.compose_project == ""
    # environment over target
    monkeypatch.setenv("LIVEKIT_URL", "wss://from-env")
    monkeypatch.setenv("LKCHAOS_LIVEKIT_NODE_URLS", "http://e1:7880,http://e2:7880")
    monkeypatch.setenv("LKCHAOS_REDIS_ADDRESS_MAP", "a:1=b:2")
    s = Settings.load()
    assert s.livekit_url == "wss://from-env"
    assert s.livekit_node_urls == ("http://e1:7880", "http://e2:7880")
    assert s.redis_address_map == {"a:1": "b:2"}
    # configuration over environment
    s = Settings.load({"livekit_url": "wss://from-config", "livekit_node_urls": ["http://c:1"],
                       "redis_address_map": {"c:1": "d:2"}, "toxiproxy_url": "http://t:1"})
    assert s.livekit_url == "wss://from-config"
    assert s.livekit_node_urls == ("http://c:1",)
    assert s.redis_address_map == {"c:1": "d:2"}
    assert s.toxiproxy_url == "http://t:1"
    # an empty value counts as unset: the next layer gives it
    monkeypatch.setenv("LIVEKIT_URL", "")
    assert Settings.load({"livekit_url": ""}).livekit_url == "wss://rtc.example.org"


def test_the_configuration_key_selects_the_target() -> None:
    s = Settings.load({"lkchaos_target": str(MINIMAL)})
    assert s.livekit_node_urls == ("http://127.0.0.1:7880",)
    assert Settings.load().livekit_node_urls == Settings().livekit_node_urls


def test_the_reference_target_gives_exactly_the_defaults(
        monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:  # fmt: skip
    (clean_env / "stack.env").write_text(f"LIVEKIT_API_KEY=APIkey\nLIVEKIT_API_SECRET={SECRET}\n")
    assert select.select_target().path == REFERENCE.resolve()
    with_reference = Settings.load()
    no_checkout(monkeypatch)
    without = Settings.load()
    assert with_reference == without
    assert with_reference.livekit_api_secret == SECRET
    assert with_reference.keys_problem == "" and without.keys_problem == ""


def test_no_target_outside_a_checkout_gives_the_defaults(monkeypatch: pytest.MonkeyPatch,
                                                         clean_env: Path) -> None:
    no_checkout(monkeypatch)
    s = Settings.load()
    assert s == Settings(state_dir=str(clean_env), ca_file=str(clean_env / "certs" / "ca.crt"))


def test_runs_on_another_target_keep_their_own_run_folder(
        monkeypatch: pytest.MonkeyPatch, clean_env: Path, tmp_path: Path) -> None:  # fmt: skip
    # The reference stack's runs use the state folder itself, however it is chosen.
    assert Settings.load().run_dir == str(clean_env)
    monkeypatch.setenv("LKCHAOS_TARGET", str(REFERENCE))
    assert Settings.load().run_dir == str(clean_env)
    # Another target file: a folder of its own, named after the file and told apart by its
    # path from a file of the same name elsewhere.
    monkeypatch.setenv("LKCHAOS_TARGET", str(MINIMAL))
    minimal = Path(Settings.load().run_dir)
    assert minimal.parent == clean_env / "targets" and minimal.name.startswith("minimal-")
    twin = tmp_path / "elsewhere" / "minimal.yaml"
    twin.parent.mkdir()
    twin.write_text(MINIMAL.read_text())
    monkeypatch.setenv("LKCHAOS_TARGET", str(twin))
    elsewhere = Path(Settings.load().run_dir)
    assert elsewhere.parent == minimal.parent and elsewhere != minimal
    assert Settings.load().state_dir == str(clean_env)  # the ledger and history stay shared


# -- a bad target --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["environment", "configuration", "flag"])
def test_a_missing_target_named_explicitly_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path, how: str) -> None:
    path = tmp_path / "nowhere.yaml"
    conf: dict[str, str] = {}
    if how == "environment":
        monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    elif how == "configuration":
        conf["lkchaos_target"] = str(path)
    with select.target_for_process(path if how == "flag" else None):
        with pytest.raises(ConfigError, match=f"target {path} .*cannot be read"):
            Settings.load(conf)
    assert select._process_flag is None


def test_an_invalid_target_is_refused_with_its_file_and_problems(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    path = write_target(tmp_path, "ftp://nowhere")
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    with pytest.raises(ConfigError) as refused:
        Settings.load()
    assert f"{path}:" in str(refused.value) and "livekit.url" in str(refused.value)


def test_cli_commands_agree_on_a_bad_target(tmp_path: Path) -> None:
    path = write_target(tmp_path, "ftp://nowhere")
    experiment = ROOT / "experiments" / next(p.name for p in (ROOT / "experiments").glob("*.json"))
    for command, args in ((main, ["recover", "--target", str(path)]),
                          (main, ["check", "--offline", "--target", str(path), str(experiment)]),
                          (target_cli, ["check", "--offline", "--target", str(path)])):
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 2, result.output
        assert f"{path}:" in result.output and "livekit.url" in result.output
    assert select._process_flag is None


# -- secrets -------------------------------------------------------------------------------


def test_the_targets_secrets_are_read_when_no_other_layer_gives_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "target.yaml"
    path.write_text(MINIMAL.read_text())
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    s = Settings.load()  # neither secret resolves: loading still works
    assert (s.livekit_api_key, s.livekit_api_secret) == ("", "")
    with pytest.raises(ConfigError, match="env LK_KEY.*LK_SECRET") as refused:
        s.require_keys()
    assert "LIVEKIT_API_KEY and LIVEKIT_API_SECRET" in str(refused.value)
    monkeypatch.setenv("LK_KEY", "APIkey")
    (tmp_path / "keys.env").write_text(f"LK_SECRET={SECRET}\n")
    s = Settings.load()
    assert s.require_keys() == ("APIkey", SECRET)
    assert SECRET not in repr(s)
    given = Settings.load({}, {"livekit": {"api_key": "k", "api_secret": "s"}})
    assert given.require_keys() == ("k", "s")


# -- a second deployment's target ------------------------------------------------------------


def test_an_activity_that_needs_a_missing_component_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_TARGET", str(MINIMAL))
    activity = "lkchaos.toxiproxy.actions.add_latency"
    assert missing(load_target(MINIMAL).target, activity) == [
        "needs Toxiproxy: the target has none"]
    with pytest.raises(ActivityFailed, match="needs Toxiproxy and the target has none.*"
                                             "toxiproxy:.*lkchaos target check"):
        toxiproxy_actions.add_latency("agent_livekit", 100)


# -- a target is parsed once per change -------------------------------------------------------


def test_a_second_load_does_not_parse_the_target_again(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(MINIMAL.read_text())
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    parsed: list[Path] = []

    def counting(file: str | Path) -> tuple[load.LoadedTarget | None, list[load.Problem]]:
        parsed.append(Path(file))
        return load.check_target(file)

    monkeypatch.setattr(layer, "check_target", counting)
    first = Settings.load()
    assert Settings.load() == first
    assert Settings.load({"livekit_url": "wss://x"}).livekit_url == "wss://x"
    assert len(parsed) == 1
    path.write_text(MINIMAL.read_text().replace("wss://rtc.example.org", "wss://changed.org"))
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    assert Settings.load().livekit_url == "wss://changed.org"
    assert len(parsed) == 2
