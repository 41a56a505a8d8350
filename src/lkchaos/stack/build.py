"""Build the reference stack's images offline: base image, pinned Go servers, Python wheels.

Each step reuses what an earlier run left (the Go binaries in the user cache, the wheels with a
stamp of the requirements they were built from, images already in the engine), so a warm
machine builds nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lkchaos.errors import CommandFailed, PrerequisiteError
from lkchaos.stack import layout
from lkchaos.stack.compose import Compose, run
from lkchaos.stack.layout import StackPaths

BASE_IMAGE = "debian:bookworm-slim"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

Say = Callable[[str], None]


@dataclass(frozen=True)
class GoBinary:
    """A Go program built from its module at a pinned version."""

    name: str
    module: str
    version: str
    package: str
    image: str

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.version}"


GO_BINARIES: tuple[GoBinary, ...] = (
    GoBinary(
        "livekit-server", "github.com/livekit/livekit-server", layout.LIVEKIT_VERSION,
        "./cmd/server", "livekit",
    ),
    GoBinary(
        "toxiproxy-server", "github.com/Shopify/toxiproxy/v2", layout.TOXIPROXY_VERSION,
        "./cmd/server", "toxiproxy",
    ),
    GoBinary(
        "toxiproxy-cli", "github.com/Shopify/toxiproxy/v2", layout.TOXIPROXY_VERSION,
        "./cmd/cli", "toxiproxy",
    ),
    GoBinary(
        "caddy", "github.com/caddyserver/caddy/v2", layout.CADDY_VERSION, "./cmd/caddy", "caddy",
    ),
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lkchaos"


#: Images installed from the wheel folder that `stage_wheels` fills.
WHEEL_IMAGES = ("lkchaos/voice", "lkchaos/prober")
SKIPPED_PARTS = {"bin", "wheels", "__pycache__", ".mypy_cache", ".pytest_cache"}


def _dockerignore(context: Path) -> list[tuple[bool, str]]:
    """(negated, pattern) pairs from the context's .dockerignore, in order."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, line.lstrip("!").strip("/")))
    return rules


def _ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent of it) decides."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in rules:
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            ignored = not negated
    return ignored


def context_digest(context: Path) -> str:
    """A digest of what a build context sends, less the staged binaries and wheels.

    Honours the context's ``.dockerignore``. Pinned versions are part of the files
    (Dockerfiles, requirements, the compose file's tags), so a changed Dockerfile, service
    source or pin gives a new digest.
    """
    rules = _dockerignore(context)
    reincluded = [pattern for negated, pattern in rules if negated]
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(context):
        base = Path(folder).relative_to(context)
        keep = []
        for name in sorted(dirs):
            rel = str(base / name)
            if name in SKIPPED_PARTS:
                continue
            if _ignored(rel, rules) and not any(p.startswith(rel + "/") for p in reincluded):
                continue
            keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            rel = str(base / name)
            if _ignored(rel, rules):
                continue
            digest.update(rel.encode() + b"\0" + (Path(folder) / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _stamps_file() -> Path:
    return cache_dir() / "image-inputs.json"


def _read_stamps() -> dict[str, str]:
    try:
        data = json.loads(_stamps_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_stamps(stamps: dict[str, str]) -> None:
    _stamps_file().parent.mkdir(parents=True, exist_ok=True)
    _stamps_file().write_text(json.dumps(stamps, indent=2, sort_keys=True) + "\n")


def image_exists(name: str) -> bool:
    try:
        run(["docker", "image", "inspect", name], timeout=30)
    except CommandFailed:
        return False
    return True


def ensure_base_image(say: Say) -> None:
    """Make ``debian:bookworm-slim`` available: already local, pulled, or debootstrapped.

    Set ``LKCHAOS_OFFLINE=1`` to skip the pull attempt on a machine without a registry.
    """
    if image_exists(BASE_IMAGE):
        return
    if os.environ.get("LKCHAOS_OFFLINE") != "1":
        say(f"pulling {BASE_IMAGE}")
        try:
            run(["docker", "pull", BASE_IMAGE], timeout=300)
            return
        except CommandFailed:
            say(f"no registry answered; building {BASE_IMAGE} with debootstrap")
    if shutil.which("debootstrap") is None:
        raise PrerequisiteError(
            f"{BASE_IMAGE} is not available and cannot be pulled; install debootstrap "
            "(`apt-get install debootstrap`) so lkchaos can build it, or load the image yourself"
        )
    mirror = os.environ.get("LKCHAOS_DEBIAN_MIRROR", DEBIAN_MIRROR)
    with tempfile.TemporaryDirectory(prefix="lkchaos-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(root), mirror], timeout=900,
            hint="debootstrap needs root and a reachable Debian mirror (LKCHAOS_DEBIAN_MIRROR)")
        run(["sh", "-c", f"tar -C '{root}' -c . | docker import - {BASE_IMAGE}"], timeout=300)
    say(f"built {BASE_IMAGE} from Debian packages")


def build_go_binary(binary: GoBinary, say: Say) -> Path:
    """Build (once) and return the cached binary.

    The module is fetched from the Go module proxy and built as the main module, so its own
    ``replace`` directives apply (livekit-server has some, which ``go install`` refuses).
    """
    target = cache_dir() / "bin" / binary.cache_name
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise PrerequisiteError(
            f"building {binary.name} needs Go 1.26 or newer on PATH (https://go.dev/dl/)"
        )
    say(f"building {binary.name} {binary.version} with Go (a few minutes, once)")
    proc = run(["go", "mod", "download", "-json", f"{binary.module}@{binary.version}"], timeout=600)
    source = Path(json.loads(proc.stdout)["Dir"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lkchaos-go-") as tmp:
        work = Path(tmp) / "src"
        shutil.copytree(source, work)
        for path in [work, *work.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        partial = target.with_suffix(".partial")
        run(["go", "build", "-trimpath", "-o", str(partial), binary.package], timeout=1800,
            env={"CGO_ENABLED": "0"}, hint=f"while building {binary.name}", cwd=work)
        partial.replace(target)
    return target


def stage_go_binaries(paths: StackPaths, say: Say, images: set[str]) -> None:
    """Copy the cached Go binaries (built if needed) into the build contexts of ``images``."""
    for binary in GO_BINARIES:
        if binary.image not in images:
            continue
        built = build_go_binary(binary, say)
        dest = paths.images_dir / binary.image / "bin" / binary.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.is_file() or dest.stat().st_size != built.stat().st_size:
            shutil.copy2(built, dest)


def stage_wheels(paths: StackPaths, say: Say) -> None:
    """Fill the voice image's wheel folder from ``stack/voice/requirements.txt`` (once)."""
    requirements = paths.root / "stack" / "voice" / "requirements.txt"
    if not requirements.is_file():
        raise PrerequisiteError(f"{requirements} is missing: the checkout is incomplete")
    wheels = paths.images_dir / "voice" / "wheels"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = wheels / ".requirements.sha256"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    say("collecting Python wheels for the voice image (once)")
    wheels.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "-r", str(requirements), "-w", str(wheels)]
    if sys.version_info[:2] != (3, 11):
        # The image runs Debian bookworm's Python 3.11: fetch its wheels, not the host's.
        argv += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]
    run(argv, timeout=1800, hint="pip must reach a package index (pip config list)")
    stamp.write_text(digest + "\n")


def build(paths: StackPaths, say: Say, force: bool = False) -> None:
    """Build every image of the stack that is missing (all of them with ``force``).

    Inputs (base image, Go binaries, wheels) are prepared only for the images to build, so a
    machine that has every image needs neither Go nor a package index.
    """
    compose = Compose(paths)
    by_image: dict[str, tuple[str, str]] = {}
    for service, (image, context) in sorted(_service_images(compose).items()):
        by_image.setdefault(image, (service, context))
    stamps = _read_stamps()
    digests = {image: context_digest(Path(context)) for image, (_, context) in by_image.items()}
    todo = {
        image: sc for image, sc in by_image.items()
        if force or stamps.get(image) != digests[image] or not image_exists(image)
    }
    if not todo:
        say("all images present and up to date")
        return
    contexts = {Path(context).name for _, context in todo.values()}
    ensure_base_image(say)
    stage_go_binaries(paths, say, contexts)
    if any(image.startswith(WHEEL_IMAGES) for image in todo):
        stage_wheels(paths, say)
    services = sorted(service for service, _ in todo.values())
    say(f"building images for: {', '.join(services)}")
    compose.run("build", *services, timeout=3600, capture=False)
    stamps.update({image: digests[image] for image in todo})
    _write_stamps(stamps)


def _service_images(compose: Compose) -> dict[str, tuple[str, str]]:
    """Service -> (image, build context) for every service the stack builds."""
    proc = compose.run("config", "--format", "json", timeout=60)
    services = json.loads(proc.stdout)["services"]
    return {
        name: (svc["image"], svc["build"]["context"])
        for name, svc in services.items()
        if "build" in svc
    }
