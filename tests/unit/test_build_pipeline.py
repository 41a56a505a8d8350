"""`lkchaos stack build` on a cold machine: the image builds run beside the Go builds.

The steps themselves (Go, Docker, pip) are replaced by recorders here; what is checked is the
order the pipeline promises: images that need no Go binary are built while the Go builds
run, each Go image only once its binaries are staged, Ingress (the longest build) first, a
failure on either side reported once the other side has stopped, and the images built
before a failure stamped so the next run rebuilds only the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest

from lkchaos.errors import CommandFailed
from lkchaos.stack import build
from lkchaos.stack.compose import Compose
from lkchaos.stack.layout import StackPaths

#: service -> (image, context folder name), as the reference stack's compose file has them.
SERVICES = {
    "agent": ("lkchaos/voice:1", "voice"),
    "dns": ("lkchaos/dns:1", "dns"),
    "redis-primary": ("lkchaos/redis:1", "redis"),
    "livekit-1": ("livekit/livekit-server:1", "livekit"),
    "livekit-2": ("livekit/livekit-server:1", "livekit"),
    "caddy": ("caddy:1", "caddy"),
    "ingress": ("livekit/ingress:1", "ingress"),
    "toxiproxy": ("ghcr.io/shopify/toxiproxy:1", "toxiproxy"),
}
BOUND_S = 10.0  # no step of these recorders waits longer for another
P = ParamSpec("P")
T = TypeVar("T")


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.plain_build_started = threading.Event()
        self.go_started = threading.Event()
        self.image_failed = threading.Event()
        self.fail_compose: set[str] = set()
        self.fail_stage: set[str] = set()
        self.built: set[str] = set()  # images in the engine
        self.images_done: Future[None] | None = None  # the pipeline's image builds

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def stage(self, _paths: StackPaths, _say: object, contexts: set[str]) -> None:
        (name,) = contexts
        self.note(f"go:{name}")
        self.go_started.set()
        if name == "ingress":  # the first Go build: the plain images must start beside it
            assert self.plain_build_started.wait(BOUND_S), "no image was built beside Go"
            if self.fail_compose:  # this Go build outlasts the failed image build
                assert self.image_failed.wait(BOUND_S)
                # and has reached the pipeline (the image builds' future) before it ends
                assert self.images_done is not None
                assert self.images_done.exception(BOUND_S) is not None
        if name in self.fail_stage:
            raise CommandFailed(["go", "build"], 1, f"{name} did not compile")

    def compose(self, *args: str, **_kw: object) -> object:
        # Set on the Compose class as a bound method: the Compose instance is not passed.
        assert args[0] == "build"
        services = sorted(args[1:])
        self.note("image:" + ",".join(services))
        if "dns" in services:
            self.plain_build_started.set()
        if self.fail_compose & set(services):
            # It fails while a Go build is under way, as a download failing mid-build does.
            assert self.go_started.wait(BOUND_S), "no Go build started beside the images"
            self.image_failed.set()
            raise CommandFailed(["docker", "compose", "build"], 1, "apt-get failed")
        self.built |= {SERVICES[service][0] for service in services}
        return None


@pytest.fixture()
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    rec = Recorder()

    class Pool(ThreadPoolExecutor):
        """The pipeline's pool, its image builds' future kept where a Go build can wait."""

        def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
            future = super().submit(fn, *args, **kwargs)
            rec.images_done = future  # type: ignore[assignment]
            return future

    monkeypatch.setattr(build, "ThreadPoolExecutor", Pool)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "_service_images", lambda _c: {
        service: (image, str(tmp_path / "images" / context))
        for service, (image, context) in SERVICES.items()
    })  # fmt: skip
    monkeypatch.setattr(build, "image_inputs_digest", lambda context: f"digest-{context.name}")
    monkeypatch.setattr(build, "image_exists", lambda name: name in rec.built)
    monkeypatch.setattr(build, "ensure_base_image", lambda _say: rec.note("base"))
    monkeypatch.setattr(build, "stage_wheels", lambda _p, _s: rec.note("wheels"))
    monkeypatch.setattr(build, "stage_go_binaries", rec.stage)
    monkeypatch.setattr(build, "build_tool", lambda name, _s, _p=None: rec.note(f"tool:{name}"))
    monkeypatch.setattr(build.shutil, "which", lambda _cmd: "/usr/bin/go")
    monkeypatch.setattr(Compose, "run", rec.compose)
    (tmp_path / "stack" / "tools" / "heldcallers").mkdir(parents=True)
    (tmp_path / "stack" / "tools" / "turncaller").mkdir(parents=True)
    yield rec


def paths(tmp_path: Path) -> StackPaths:
    return StackPaths(tmp_path)


def test_images_without_go_are_built_beside_the_go_builds_and_each_go_image_after_its_binaries(
    recorder: Recorder, tmp_path: Path,
) -> None:  # fmt: skip
    build.build(paths(tmp_path), lambda _line: None)

    events = recorder.events
    assert events[0] == "base"
    go = [e for e in events if e.startswith("go:")]
    assert go == ["go:ingress", "go:livekit", "go:caddy", "go:toxiproxy"]
    plain = "image:agent,dns,redis-primary"
    assert events.index("wheels") < events.index(plain) < events.index("go:livekit")
    for name, services in (("ingress", "ingress"), ("livekit", "livekit-1"),
                           ("caddy", "caddy"), ("toxiproxy", "toxiproxy")):  # fmt: skip
        assert events.index(f"go:{name}") < events.index(f"image:{services}")
    # Both nodes share one image: it is built once, for one of its services.
    assert sum(e.startswith("image:") and "livekit" in e for e in events) == 1
    assert {"tool:heldcallers", "tool:turncaller"} <= set(events)
    assert sorted(build._read_stamps()) == sorted({image for image, _ in SERVICES.values()})


def test_a_failed_image_build_stops_the_go_builds_and_is_the_error_reported(
    recorder: Recorder, tmp_path: Path,
) -> None:  # fmt: skip
    recorder.fail_compose = {"dns"}
    with pytest.raises(CommandFailed, match="apt-get failed"):
        build.build(paths(tmp_path), lambda _line: None)

    # The Go build under way when it failed ends; none after it starts.
    assert [e for e in recorder.events if e.startswith("go:")] == ["go:ingress"]
    assert not any(e.startswith("tool:") for e in recorder.events)
    assert build._read_stamps() == {}


def test_a_failed_go_build_is_reported_after_the_images_already_staged_are_built_and_stamped(
    recorder: Recorder, tmp_path: Path,
) -> None:  # fmt: skip
    recorder.fail_stage = {"caddy"}
    with pytest.raises(CommandFailed, match="caddy did not compile"):
        build.build(paths(tmp_path), lambda _line: None)

    assert "go:toxiproxy" not in recorder.events
    stamped = set(build._read_stamps())
    assert stamped == {"lkchaos/voice:1", "lkchaos/dns:1", "lkchaos/redis:1",
                       "livekit/ingress:1", "livekit/livekit-server:1"}  # fmt: skip
    # The next run builds only what is left.
    recorder.events.clear()
    recorder.fail_stage = set()
    build.build(paths(tmp_path), lambda _line: None)
    built = [e for e in recorder.events if e.startswith("image:")]
    assert sorted(built) == ["image:caddy", "image:toxiproxy"]
