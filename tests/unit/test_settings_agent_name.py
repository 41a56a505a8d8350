"""An empty agent name is a value: automatic dispatch (an agent worker started without an
``agent_name``, livekit-agents' default). Set in the target (``voice: {agent_name: ""}``), the
configuration or the environment, ``""`` wins over the layers below; nothing set at all leaves
``lkchaos-agent``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lkchaos.settings import Settings
from lkchaos.target import select
from lkchaos.target.cli import target as target_cli
from lkchaos.target.model import Target
from tests.unit.settings_env import clean_settings_env

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return clean_settings_env(monkeypatch, tmp_path)


def with_voice(folder: Path, voice: dict[str, object] | None) -> Path:
    data = yaml.safe_load(MINIMAL.read_text())
    if voice is not None:
        data["voice"] = voice
    path = folder / "target.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_nothing_set_is_lkchaos_agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings.load().agent_name == "lkchaos-agent"  # the reference target's
    monkeypatch.setattr(select, "reference_target", lambda environ=None: None)
    assert Settings.load().agent_name == "lkchaos-agent"  # the built-in default
    for voice in (None, {"prober_url": ""}):  # no voice section, or one without a name
        monkeypatch.setenv("LKCHAOS_TARGET", str(with_voice(tmp_path, voice)))
        assert Settings.load().agent_name == "lkchaos-agent"


def test_the_targets_empty_name_is_automatic_dispatch(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    data = yaml.safe_load(MINIMAL.read_text())
    data["voice"] = {"agent_name": ""}
    assert Target.model_validate(data).voice is not None
    monkeypatch.setenv("LKCHAOS_TARGET", str(with_voice(tmp_path, {"agent_name": ""})))
    assert Settings.load().agent_name == ""
    # a name in the environment or the configuration still wins over the target's ""
    monkeypatch.setenv("LKCHAOS_AGENT_NAME", "from-env")
    assert Settings.load().agent_name == "from-env"
    assert Settings.load({"agent_name": "from-conf"}).agent_name == "from-conf"


def test_an_empty_name_set_explicitly_wins(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("LKCHAOS_TARGET", str(with_voice(tmp_path, {"agent_name": "my-agent"})))
    assert Settings.load().agent_name == "my-agent"
    monkeypatch.setenv("LKCHAOS_AGENT_NAME", "")
    assert Settings.load().agent_name == ""  # the environment's "" over the target
    monkeypatch.setenv("LKCHAOS_AGENT_NAME", "from-env")
    assert Settings.load({"agent_name": ""}).agent_name == ""  # the configuration's ""
    assert Settings.load({"agent_name": None}).agent_name == "from-env"  # None: unset
    # Other settings keep "" as unset.
    monkeypatch.setenv("LIVEKIT_URL", "")
    assert Settings.load({"livekit_url": ""}).livekit_url == "wss://rtc.example.org"


def test_target_check_names_an_empty_agent_name_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_AGENT_NAME", "")
    result = CliRunner().invoke(target_cli, ["check", "--offline", "--target", str(MINIMAL)])
    assert 'LKCHAOS_AGENT_NAME (sets agent_name to "")' in result.output, result.output
