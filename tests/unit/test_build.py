"""What decides whether an image is rebuilt: the digest of its build context's own files."""

from __future__ import annotations

from pathlib import Path

from lkchaos.stack import build, layout


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


def test_every_go_binary_is_pinned_and_lands_in_an_image_context() -> None:
    images = {p.name for p in (Path(__file__).resolve().parents[2] / "stack/images").iterdir()}
    for binary in build.GO_BINARIES:
        assert binary.version.startswith("v") and binary.version.count(".") == 2
        assert binary.image in images
    assert {b.version for b in build.GO_BINARIES} == {
        layout.LIVEKIT_VERSION, layout.TOXIPROXY_VERSION, layout.CADDY_VERSION
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
