"""The network sidecar's image: built from the Dockerfile inside the package, again when it
changes, on a fake Docker engine."""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from docker.errors import BuildError, ImageNotFound, NotFound
from requests.exceptions import ReadTimeout

from lkchaos.network import sidecar
from lkchaos.stack.build import BASE_IMAGE

ROOT = Path(__file__).resolve().parents[2]


class FakeImage:
    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels


class FakeImages:
    def __init__(self, present: FakeImage | None, fail: BuildError | None = None) -> None:
        self.present = present
        self.fail = fail
        self.builds: list[dict[str, Any]] = []

    def get(self, tag: str) -> FakeImage:
        if tag != sidecar.IMAGE or self.present is None:
            raise ImageNotFound(f"no such image: {tag}")
        return self.present

    def build(self, **kwargs: Any) -> tuple[FakeImage, list[Any]]:
        kwargs["dockerfile_bytes"] = kwargs["fileobj"].read()
        self.builds.append(kwargs)
        if self.fail is not None:
            raise self.fail
        self.present = FakeImage(kwargs["labels"])
        return self.present, []


class FakeEngine:
    def __init__(self, images: FakeImages) -> None:
        self.images = images
        self.opened: list[float] = []  # the timeouts of the clients opened on it
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """One engine for both the caller's client and the builder ``ensure_image`` opens."""
    fake = FakeEngine(FakeImages(None))

    def docker_client(timeout: float = 10.0) -> FakeEngine:
        fake.opened.append(timeout)
        return fake

    monkeypatch.setattr(sidecar, "docker_client", docker_client)
    return fake


def _packaged() -> bytes:
    return (resources.files("lkchaos.network") / "nettools" / "Dockerfile").read_bytes()


def test_the_dockerfile_ships_in_the_package_and_builds_on_the_stack_base_image() -> None:
    source = sidecar.dockerfile()
    assert source == _packaged()
    assert sidecar.base_image(source) == "debian:bookworm-slim" == BASE_IMAGE
    assert b"iptables" in source and b"iproute2" in source


def test_pyproject_ships_the_dockerfile_as_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["lkchaos"]
    path = f"network/{sidecar.DOCKERFILE}"
    assert any(fnmatch.fnmatch(path, p) for p in patterns), (path, patterns)


def test_the_sidecar_imports_nothing_of_the_reference_stack() -> None:
    tree = ast.parse(Path(sidecar.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]  # fmt: skip
    assert "lkchaos.docker.client" in imported
    assert [m for m in imported if m and m.startswith("lkchaos.stack")] == []


def test_a_missing_image_is_built_from_the_packaged_dockerfile(engine: FakeEngine) -> None:
    assert sidecar.ensure_image(engine) == sidecar.IMAGE
    [build] = engine.images.builds
    digest = hashlib.sha256(_packaged()).hexdigest()
    assert build["dockerfile_bytes"] == _packaged()
    assert build["tag"] == sidecar.IMAGE and build["labels"] == {sidecar.DIGEST_LABEL: digest}
    assert "path" not in build  # no folder of the machine is sent as the build context
    assert engine.opened == [sidecar.BUILD_TIMEOUT] and engine.closed == 1


def test_an_image_of_this_dockerfile_is_used_as_it_is(engine: FakeEngine) -> None:
    digest = hashlib.sha256(_packaged()).hexdigest()
    engine.images.present = FakeImage({sidecar.DIGEST_LABEL: digest})
    assert sidecar.ensure_image(engine) == sidecar.IMAGE
    assert engine.images.builds == [] and engine.opened == []


@pytest.mark.parametrize("labels", [None, {}, {sidecar.DIGEST_LABEL: "0" * 64}])
def test_an_image_of_another_dockerfile_is_built_again(
    engine: FakeEngine, labels: dict[str, str] | None
) -> None:
    engine.images.present = FakeImage(labels)
    sidecar.ensure_image(engine)
    assert len(engine.images.builds) == 1
    assert engine.images.present.labels == {
        sidecar.DIGEST_LABEL: hashlib.sha256(_packaged()).hexdigest()
    }
    assert sidecar.ensure_image(engine) == sidecar.IMAGE and len(engine.images.builds) == 1


def test_a_failed_build_says_which_base_image_it_needs(engine: FakeEngine) -> None:
    log = [{"stream": "Step 1/5 : FROM debian:bookworm-slim\n"},
           {"error": "pull access denied for debian"}]  # fmt: skip
    engine.images.fail = BuildError("pull access denied for debian", log)
    with pytest.raises(sidecar.SidecarError) as failed:
        sidecar.ensure_image(engine)
    message = str(failed.value)
    assert "pull access denied for debian" in message
    assert "docker pull debian:bookworm-slim" in message
    assert engine.closed == 1


def test_an_unreadable_dockerfile_says_to_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidecar, "DOCKERFILE", "nettools/Dockerfile.gone")
    with pytest.raises(sidecar.SidecarError, match="reinstall lkchaos"):
        sidecar.dockerfile()


class FakeSidecar:
    def __init__(self) -> None:
        self.removed = False

    def start(self) -> None:
        pass

    def wait(self, timeout: float) -> dict[str, int]:
        return {"StatusCode": 0}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return b"listed\n" if stdout else b""

    def remove(self, force: bool) -> None:
        self.removed = True


class FakeContainers:
    """``containers.create`` of an engine on which only the images it holds can run."""

    def __init__(self, engine: FakeEngine, refuse: Exception | None = None) -> None:
        self.engine = engine
        self.refuse = refuse
        self.created: list[FakeSidecar] = []

    def create(self, image: str, command: list[str], **kwargs: Any) -> FakeSidecar:
        if self.refuse is not None:
            raise self.refuse
        if self.engine.images.present is None:
            raise ImageNotFound(f"No such image: {image}")
        self.created.append(FakeSidecar())
        return self.created[-1]


class Target:
    """The container a sidecar joins."""

    name = "lkchaos-livekit-1-1"
    id = "0123abcd"


def test_a_sidecar_run_on_an_engine_that_never_built_the_image_builds_it_first(
    engine: FakeEngine,
) -> None:
    # A fresh engine: the recovery sweep of a test or a user's cleanup may be the first
    # sidecar ever run there.
    engine.containers = FakeContainers(engine)  # type: ignore[attr-defined]
    assert sidecar.run(engine, Target(), "iptables -S") == "listed\n"
    assert len(engine.images.builds) == 1
    [created] = engine.containers.created  # type: ignore[attr-defined]
    assert created.removed  # and removed once it ended


@pytest.mark.parametrize(("refusal", "said", "not_said"), [
    # Docker's API errors are also requests' HTTP errors: not to be taken for a timeout.
    (NotFound("No such container: lkchaos-livekit-1-1"),
     ["cannot run the network sidecar", "No such container"], "did not finish"),
    (ReadTimeout("read timed out"), ["did not finish in 30 s", "overloaded"], "cannot run"),
])  # fmt: skip
def test_a_refused_or_unanswered_sidecar_says_which(
    engine: FakeEngine, refusal: Exception, said: list[str], not_said: str
) -> None:
    engine.images.present = FakeImage({})
    engine.containers = FakeContainers(engine, refusal)  # type: ignore[attr-defined]
    with pytest.raises(sidecar.SidecarError) as failed:
        sidecar.run(engine, Target(), "iptables -S")
    assert all(part in str(failed.value) for part in said), failed.value
    assert not_said not in str(failed.value)
