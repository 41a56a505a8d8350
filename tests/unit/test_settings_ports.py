"""LiveKit's RTC TCP fallback port (``rtc.tcp_port``) and TURN UDP port (``turn.udp_port``):
7881 and 3478 unless the target, the environment or the configuration says otherwise; 0 means
the port is off."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lkchaos.errors import ConfigError
from lkchaos.settings import Settings
from lkchaos.target import load_target, settings_values
from lkchaos.target.model import Target
from tests.unit.settings_env import clean_settings_env

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return clean_settings_env(monkeypatch, tmp_path)


def target_with(folder: Path, **livekit: object) -> Path:
    data = yaml.safe_load(MINIMAL.read_text())
    data["livekit"].update(livekit)
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_defaults_are_livekits() -> None:
    s = Settings.load()
    assert (s.livekit_rtc_tcp_port, s.livekit_turn_udp_port) == (7881, 3478)
    values = settings_values(load_target(MINIMAL), resolve_secrets=False)
    assert (values["livekit_rtc_tcp_port"], values["livekit_turn_udp_port"]) == (7881, 3478)


def test_the_target_then_the_environment_then_the_configuration(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_TARGET", str(target_with(tmp_path, rtc_tcp_port=0,
                                                         turn_udp_port=3479)))
    s = Settings.load()
    assert (s.livekit_rtc_tcp_port, s.livekit_turn_udp_port) == (0, 3479)  # 0: off, kept
    monkeypatch.setenv("LKCHAOS_LIVEKIT_RTC_TCP_PORT", "7882")
    monkeypatch.setenv("LKCHAOS_LIVEKIT_TURN_UDP_PORT", "0")
    s = Settings.load()
    assert (s.livekit_rtc_tcp_port, s.livekit_turn_udp_port) == (7882, 0)
    s = Settings.load({"livekit_rtc_tcp_port": 0, "livekit_turn_udp_port": "443"})
    assert (s.livekit_rtc_tcp_port, s.livekit_turn_udp_port) == (0, 443)


@pytest.mark.parametrize("value", ["65536", "-1", "tcp", "7881.0"])
def test_a_port_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LKCHAOS_LIVEKIT_TURN_UDP_PORT", value)
    with pytest.raises(ConfigError, match=r"livekit_turn_udp_port \(LKCHAOS_LIVEKIT_TURN_UDP_PORT\)"
                                          r" must be"):
        Settings.load()


@pytest.mark.parametrize("value", [65536, -1, "7881", True])
def test_the_schema_takes_a_port_or_0(value: object) -> None:
    data = yaml.safe_load(MINIMAL.read_text())
    data["livekit"]["rtc_tcp_port"] = value
    with pytest.raises(ValidationError):
        Target.model_validate(data)
    data["livekit"]["rtc_tcp_port"] = 0
    assert Target.model_validate(data).livekit.rtc_tcp_port == 0
