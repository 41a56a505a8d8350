"""LiveKit's Redis settings beyond the address: the database (``redis.db``), the ACL user
(``redis.username``) and the Sentinels' own credentials, from every layer: the experiment's
configuration and secrets, the environment, and the target file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lkchaos.errors import ConfigError
from lkchaos.settings import Settings
from lkchaos.target import load_target, settings_values
from lkchaos.target.cli import target as target_cli
from tests.unit.settings_env import clean_settings_env

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"
SECRET = "sentinel-secret-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return clean_settings_env(monkeypatch, tmp_path, ("REDIS_PASSWORD", "SENTINEL_PW"))


def write_target(folder: Path, redis: dict[str, object]) -> Path:
    data = yaml.safe_load(MINIMAL.read_text())
    data["redis"] = redis
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_defaults_are_database_0_and_the_default_user() -> None:
    s = Settings.load()
    assert (s.redis_db, s.redis_username, s.sentinel_username, s.sentinel_password) == (
        0, "", "", "")


def test_the_database_and_user_from_the_environment_and_the_configuration(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_REDIS_DB", "2")
    monkeypatch.setenv("LKCHAOS_REDIS_USERNAME", "livekit")
    monkeypatch.setenv("LKCHAOS_SENTINEL_USERNAME", "watcher")
    monkeypatch.setenv("LKCHAOS_SENTINEL_PASSWORD", "spw")
    s = Settings.load()
    assert (s.redis_db, s.redis_username, s.sentinel_username) == (2, "livekit", "watcher")
    assert s.sentinel_password == "spw"
    assert s.sentinel_password_source == "LKCHAOS_SENTINEL_PASSWORD"
    s = Settings.load({"redis_db": 5, "redis_username": "lk2", "sentinel_password": "c"},
                      {"redis": {"password": "p"}})
    assert (s.redis_db, s.redis_username, s.sentinel_password) == (5, "lk2", "c")
    assert s.sentinel_password_source == "the configuration's sentinel_password"
    assert s.redis_password_source == 'the secret {"redis": {"password"}}'
    secret = Settings.load({}, {"redis": {"sentinel_password": "from-secret"}})
    assert secret.sentinel_password == "from-secret"


@pytest.mark.parametrize("value", ["two", "-1", "1.5", ""])
def test_a_database_that_is_not_a_whole_number_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                          value: str) -> None:
    if value == "":  # an empty value is unset, as for the other settings
        monkeypatch.setenv("LKCHAOS_REDIS_DB", value)
        assert Settings.load().redis_db == 0
        return
    monkeypatch.setenv("LKCHAOS_REDIS_DB", value)
    with pytest.raises(ConfigError, match=r"redis_db \(LKCHAOS_REDIS_DB\) must be a whole "
                                          r"number from 0"):
        Settings.load()
    with pytest.raises(ConfigError, match="redis_db"):
        Settings.load({"redis_db": True})


def test_the_targets_database_user_and_sentinel_credentials(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    path = write_target(tmp_path, {"sentinel": {
        "addresses": ["127.0.0.1:26379"], "master": "m", "username": "livekit",
        "password_ref": {"env": "REDIS_PASSWORD"}, "db": 2, "sentinel_username": "watcher",
        "sentinel_password_ref": {"env": "SENTINEL_PW"}}})  # fmt: skip
    monkeypatch.setenv("LKCHAOS_TARGET", str(path))
    s = Settings.load()
    assert (s.redis_db, s.redis_username, s.sentinel_username) == (2, "livekit", "watcher")
    assert s.sentinel_password == ""
    assert s.sentinel_password_problem.startswith("env SENTINEL_PW")
    assert s.sentinel_password_source == ("the target's redis.sentinel.sentinel_password_ref "
                                          "(env SENTINEL_PW)")
    monkeypatch.setenv("SENTINEL_PW", SECRET)
    monkeypatch.setenv("REDIS_PASSWORD", "rpw")
    s = Settings.load()
    assert (s.sentinel_password, s.redis_password) == (SECRET, "rpw")
    assert s.redis_password_source == ("the target's redis.sentinel.password_ref "
                                       "(env REDIS_PASSWORD)")
    # the environment wins over the target
    monkeypatch.setenv("LKCHAOS_REDIS_DB", "0")
    assert Settings.load().redis_db == 0
    monkeypatch.setenv("LK_KEY", "k")
    (tmp_path / "keys.env").write_text("LK_SECRET=s\n")
    values = settings_values(load_target(path))
    assert values["sentinel_password"] == SECRET and values["redis_db"] == 2
    # `target show` lists the reference and masks the value
    result = CliRunner().invoke(target_cli, ["show", "--target", str(path)])
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "redis.sentinel.sentinel_password_ref: env SENTINEL_PW -> ***" in result.output
    assert "redis_db: 2" in result.output and "sentinel_username: 'watcher'" in result.output


def test_a_direct_targets_database_and_user(tmp_path: Path) -> None:
    path = write_target(tmp_path, {"direct": {"primary": "127.0.0.1:6379", "username": "lk",
                                              "db": 3}})  # fmt: skip
    values = settings_values(load_target(path), resolve_secrets=False)
    assert (values["redis_db"], values["redis_username"], values["sentinel_username"]) == (
        3, "lk", "")


def test_sentinel_credentials_do_not_belong_to_direct_redis(tmp_path: Path) -> None:
    path = write_target(tmp_path, {"direct": {"primary": "127.0.0.1:6379",
                                              "sentinel_username": "watcher"}})  # fmt: skip
    result = CliRunner().invoke(target_cli, ["check", "--offline", "--target", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'redis.direct.sentinel_username'" in result.output
