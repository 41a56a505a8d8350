"""Settings come from configuration, then the environment, then the reference stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkchaos.errors import ConfigError
from lkchaos.settings import Settings

ENV_KEYS = (
    "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LKCHAOS_SENTINELS",
    "LKCHAOS_REDIS_ADDRESS_MAP", "LKCHAOS_TOXIPROXY_URL", "LKCHAOS_LIVEKIT_NODE_URLS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(state))
    monkeypatch.chdir(tmp_path)  # no compose file here: the state dir comes from the env
    monkeypatch.delenv("LKCHAOS_ROOT", raising=False)
    return state


def test_defaults_describe_the_reference_stack() -> None:
    s = Settings.load()
    assert s.livekit_url == "wss://lk.chaos.test"
    assert s.livekit_node_urls == ("http://127.0.0.1:27880", "http://127.0.0.1:27890")
    assert s.sentinel_master == "lkchaos"
    assert s.map_redis_address("redis-replica", 6379) == ("127.0.0.1", 27380)
    assert s.map_redis_address("10.0.0.9", 6379) == ("10.0.0.9", 6379)


def test_keys_fall_back_to_the_stack_state(clean_env: Path) -> None:
    (clean_env / "stack.env").write_text("LIVEKIT_API_KEY=k\nLIVEKIT_API_SECRET=s\n")
    assert Settings.load().require_keys() == ("k", "s")


def test_missing_keys_say_where_to_set_them() -> None:
    with pytest.raises(ConfigError, match="LIVEKIT_API_KEY and LIVEKIT_API_SECRET"):
        Settings.load().require_keys()


def test_configuration_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_URL", "wss://from-env")
    monkeypatch.setenv("LKCHAOS_SENTINELS", "a:1, b:2")
    s = Settings.load({"livekit_url": "wss://from-config"})
    assert s.livekit_url == "wss://from-config"
    assert s.sentinel_addresses == ("a:1", "b:2")


def test_secrets_and_address_map_for_a_users_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LKCHAOS_REDIS_ADDRESS_MAP", "redis-a:6379=10.1.1.1:7000")
    s = Settings.load(
        {"livekit_node_urls": ["http://n1:7880"]},
        {"livekit": {"api_key": "key", "api_secret": "secret"}},
    )
    assert s.require_keys() == ("key", "secret")
    assert s.livekit_node_urls == ("http://n1:7880",)
    assert s.map_redis_address("redis-a", 6379) == ("10.1.1.1", 7000)


@pytest.mark.parametrize("value", ["nonsense", "a=", "=b"])
def test_malformed_address_map_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LKCHAOS_REDIS_ADDRESS_MAP", value)
    with pytest.raises(ConfigError, match="from=to"):
        Settings.load()


def test_split_address() -> None:
    assert Settings.split_address("127.0.0.1:27053", 53) == ("127.0.0.1", 27053)
    assert Settings.split_address("dns.local", 53) == ("dns.local", 53)
    with pytest.raises(ConfigError, match="not a number"):
        Settings.split_address("host:abc", 53)


# -- where the state folder is ------------------------------------------------------------
def test_the_state_folder_from_the_environment_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", "relative/state")
    assert Settings.load().state_dir == str((tmp_path / "relative" / "state").resolve())


def test_the_state_folder_of_a_checkout_is_its_lkchaos_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "sub").mkdir(parents=True)
    (checkout / "docker-compose.chaos.yml").write_text("services: {}\n")
    monkeypatch.delenv("LKCHAOS_STATE_DIR")
    monkeypatch.chdir(checkout / "sub")
    assert Settings.load().state_dir == str((checkout / ".lkchaos").resolve())


def test_from_any_folder_the_state_folder_is_the_installed_checkouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # lkchaos installed from a checkout (editable, as scripts/bootstrap.sh installs it) and
    # `chaos run` started from a folder outside it: the same state folder (and run lock) as
    # from the checkout, not one of its own per user that a second run would not see.
    from lkchaos import checkout

    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "docker-compose.chaos.yml").write_text("services: {}\n")
    monkeypatch.setattr(checkout, "package_checkout", lambda: installed)
    monkeypatch.delenv("LKCHAOS_STATE_DIR")
    monkeypatch.delenv("LKCHAOS_ROOT", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Settings.load().state_dir == str((installed / ".lkchaos").resolve())
    # A checkout the run is started in comes first.
    other = tmp_path / "other"
    other.mkdir()
    (other / "docker-compose.chaos.yml").write_text("services: {}\n")
    monkeypatch.chdir(other)
    assert Settings.load().state_dir == str((other / ".lkchaos").resolve())


def test_the_installed_checkout_is_the_one_holding_the_package() -> None:
    from lkchaos import checkout

    root = checkout.package_checkout()
    assert root is not None and (root / "src" / "lkchaos" / "checkout.py").is_file()


@pytest.mark.parametrize("xdg", [None, "", "relative/state"])
def test_outside_a_checkout_the_state_folder_is_per_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str | None
) -> None:
    from lkchaos import checkout

    monkeypatch.setattr(checkout, "package_checkout", lambda: None)  # installed from an index
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("LKCHAOS_STATE_DIR")
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)  # unset, empty or relative: ignored
    first = Settings.load().state_dir
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert Settings.load().state_dir == first == str(home / ".local" / "state" / "lkchaos")
    assert not (tmp_path / ".lkchaos").exists()


def test_outside_a_checkout_xdg_state_home_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lkchaos import checkout

    monkeypatch.setattr(checkout, "package_checkout", lambda: None)
    monkeypatch.delenv("LKCHAOS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings.load().state_dir == str(tmp_path / "xdg" / "lkchaos")
