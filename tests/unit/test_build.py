"""What decides whether an image is rebuilt: the digest of its build context's own files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lkchaos.errors import CommandFailed, PrerequisiteError
from lkchaos.stack import build, layout

CADDY = next(b for b in build.GO_BINARIES if b.name == "caddy")
EXACT = re.compile(r"^v\d+\.\d+\.\d+$")


def test_digest_follows_sources_but_not_staged_binaries(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "server").write_bytes(b"\x7fELF one")
    first = build.context_digest(tmp_path)
    (tmp_path / "bin" / "server").write_bytes(b"\x7fELF two")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "x.whl").write_bytes(b"zip")
    assert build.context_digest(tmp_path) == first
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nRUN true\n")
    assert build.context_digest(tmp_path) != first


def test_image_inputs_follow_the_go_binaries_staged_into_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts = {}
    for name in ("caddy", "voice"):
        contexts[name] = tmp_path / name
        contexts[name].mkdir()
        (contexts[name] / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    before = {name: build.image_inputs_digest(path) for name, path in contexts.items()}
    newer = build.GoBinary(CADDY.name, CADDY.module, CADDY.version, CADDY.package, CADDY.image,
                           plugins=((CADDY.plugins[0][0], "v9.9.9"),), imports=CADDY.imports,
                           flavour=CADDY.flavour)  # fmt: skip
    others = tuple(b for b in build.GO_BINARIES if b is not CADDY)
    monkeypatch.setattr(build, "GO_BINARIES", (*others, newer))
    assert build.image_inputs_digest(contexts["caddy"]) != before["caddy"]  # same files
    assert build.image_inputs_digest(contexts["voice"]) == before["voice"]  # no Go binary


def test_every_go_binary_is_pinned_and_lands_in_an_image_context() -> None:
    images = {p.name for p in (Path(__file__).resolve().parents[2] / "stack/images").iterdir()}
    for binary in build.GO_BINARIES:
        assert EXACT.match(binary.version)
        assert all(EXACT.match(version) for _, version in binary.plugins)
        assert binary.image in images
    assert {b.version for b in build.GO_BINARIES} == {
        layout.LIVEKIT_VERSION, layout.TOXIPROXY_VERSION, layout.CADDY_VERSION,
        layout.INGRESS_VERSION,
    }


def test_digest_honours_dockerignore_like_docker(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*\n!src/pkg\n**/__pycache__\n")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "big.py").write_text("ignored\n")
    first = build.context_digest(tmp_path)
    (tmp_path / ".venv" / "lib" / "big.py").write_text("still ignored\n")
    (tmp_path / "notes.txt").write_text("ignored too\n")
    assert build.context_digest(tmp_path) == first
    (tmp_path / "src" / "pkg" / "a.py").write_text("x = 2\n")
    assert build.context_digest(tmp_path) != first


def test_caddy_is_a_generated_main_module_with_the_layer4_app_at_exact_versions() -> None:
    assert CADDY.generated and CADDY.image == "caddy"
    assert CADDY.plugins == (("github.com/mholt/caddy-l4", build.CADDY_L4_VERSION),)
    go_mod = CADDY.go_mod()
    required = re.findall(r"^\t(\S+) (\S+)$", go_mod, flags=re.MULTILINE)
    assert required == [("github.com/caddyserver/caddy/v2", layout.CADDY_VERSION),
                        ("github.com/mholt/caddy-l4", build.CADDY_L4_VERSION)]
    main_go = CADDY.main_go()
    imported = re.findall(r'^\t(?:_|cmd) "([^"]+)"$', main_go, flags=re.MULTILINE)
    assert imported == ["github.com/caddyserver/caddy/v2/cmd",
                        "github.com/caddyserver/caddy/v2/modules/standard",
                        "github.com/mholt/caddy-l4/layer4",
                        "github.com/mholt/caddy-l4/modules/l4proxy",
                        "github.com/mholt/caddy-l4/modules/l4subroute",
                        "github.com/mholt/caddy-l4/modules/l4tls"]
    assert "cmd.Main()" in main_go


def test_caddy_cache_name_names_both_pins_so_a_plain_caddy_is_not_reused() -> None:
    assert CADDY.cache_name == f"caddy-l4-{layout.CADDY_VERSION}-{build.CADDY_L4_VERSION}"
    plain = build.GoBinary("caddy", CADDY.module, CADDY.version, "./cmd/caddy", "caddy")
    assert plain.cache_name == f"caddy-{layout.CADDY_VERSION}"
    assert len({b.cache_name for b in build.GO_BINARIES}) == len(build.GO_BINARIES)


FAKE_GO = """#!/bin/sh
# Records each call (arguments, the environment that matters, the files present) and acts
# like go: `go build -o OUT` writes OUT.
{ echo "ARGS $*"; echo "ENV CGO_ENABLED=$CGO_ENABLED GOTOOLCHAIN=$GOTOOLCHAIN"; ls; } >> "$LOG"
[ -n "$FAIL_ON" ] && [ "$1 $2" = "$FAIL_ON" ] && { echo "go: module lookup refused" >&2; exit 1; }
if [ "$1" = build ]; then
  while [ $# -gt 0 ]; do [ "$1" = -o ] && echo built > "$2"; shift; done
fi
exit 0
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    log = tmp_path / "go.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    return log


def test_generated_build_tidies_pinned_go_mod_then_builds_static_once(fake_go: Path) -> None:
    said: list[str] = []
    target = build.build_go_binary(CADDY, said.append)
    assert target == build.cache_dir() / "bin" / CADDY.cache_name
    assert target.read_text() == "built\n"
    calls = fake_go.read_text().split("ARGS ")[1:]
    assert [c.splitlines()[0] for c in calls] == [
        "mod tidy", f"build -trimpath -o {target.with_suffix('.partial')} ."
    ]
    assert "GOTOOLCHAIN=local" in calls[0]
    assert "CGO_ENABLED=0" in calls[1]
    assert {"go.mod", "main.go"} <= set(calls[0].splitlines()[2:])
    assert said == [f"building caddy from github.com/caddyserver/caddy/v2@{layout.CADDY_VERSION} "
                    f"github.com/mholt/caddy-l4@{build.CADDY_L4_VERSION} with Go "
                    "(a few minutes, once)"]
    fake_go.unlink()
    assert build.build_go_binary(CADDY, said.append) == target
    assert not fake_go.exists()  # cached: go was not run again


def test_refused_module_names_the_pins_and_what_to_check(
    fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_ON", "mod tidy")
    with pytest.raises(CommandFailed, match=r"(?s)module lookup refused.*Go 1\.26 or newer.*"
                       r"serving each pinned version"):  # fmt: skip
        build.build_go_binary(CADDY, lambda _: None)
    assert not (build.cache_dir() / "bin" / CADDY.cache_name).exists()


def test_missing_go_is_a_prerequisite_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(PrerequisiteError, match="needs Go 1.26 or newer on PATH"):
        build.build_go_binary(CADDY, lambda _: None)


def test_a_tool_is_a_complete_pinned_module_and_its_digest_follows_its_code(
    tmp_path: Path,
) -> None:
    from lkchaos.stack.layout import StackPaths

    root = Path(__file__).resolve().parents[2]
    source = build.tool_source("turncaller", StackPaths(root))
    assert {"go.mod", "go.sum", "main.go"} <= {p.name for p in source.iterdir()}
    assert "github.com/livekit/server-sdk-go/v2 v2.19.0" in (source / "go.mod").read_text()
    with pytest.raises(PrerequisiteError, match="no tool named 'nope'; the tools are: turncaller"):
        build.tool_source("nope", StackPaths(root))
    copy = tmp_path / "stack" / "tools" / "turncaller"
    copy.mkdir(parents=True)
    for name in ("go.mod", "go.sum", "main.go"):
        (copy / name).write_bytes((source / name).read_bytes())
    before = build.tool_digest(copy)
    (copy / "notes.txt").write_text("not part of the build")
    assert build.tool_digest(copy) == before
    (copy / "main.go").write_text((source / "main.go").read_text() + "\n// changed\n")
    assert build.tool_digest(copy) != before
    (copy / "go.sum").unlink()
    with pytest.raises(PrerequisiteError, match="lacks go.sum: the checkout is incomplete"):
        build.tool_source("turncaller", StackPaths(tmp_path))


def test_the_voice_wheels_are_collected_once_for_every_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs: list[list[str]] = []

    def pip_wheel(argv: list[str], **_kw: object) -> None:
        runs.append(argv)
        folder = Path(argv[argv.index("-w") + 1])
        (folder / "faster_whisper-1.2.1-py3-none-any.whl").write_bytes(b"wheel")

    monkeypatch.setattr(build, "run", pip_wheel)
    checkouts = []
    for name in ("main", "fresh-clone"):
        root = tmp_path / name
        (root / "stack" / "voice").mkdir(parents=True)
        (root / "stack" / "voice" / "requirements.txt").write_text("faster-whisper==1.2.1\n")
        checkouts.append(layout.StackPaths(root))
        build.stage_wheels(checkouts[-1], lambda _line: None)
    assert len(runs) == 1  # the second checkout's wheels came from the cache
    for paths in checkouts:
        wheel = paths.images_dir / "voice" / "wheels" / "faster_whisper-1.2.1-py3-none-any.whl"
        assert wheel.read_bytes() == b"wheel"
    # Other requirements: collected again, and the checkout's folder holds only theirs.
    (checkouts[0].root / "stack" / "voice" / "requirements.txt").write_text("av==14.0.1\n")
    build.stage_wheels(checkouts[0], lambda _line: None)
    assert len(runs) == 2
