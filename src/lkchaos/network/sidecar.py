"""The fault sidecar: a short-lived container beside a target container.

By default it runs in the target's network namespace (``docker run --rm --network
container:<target> --cap-add NET_ADMIN lkchaos/nettools:<version> sh -c <script>``), through
the Docker SDK, with a timeout. :class:`Options` runs it otherwise: in the host's PID namespace
(a crash by host PID), inside the target's cgroup (``--cgroup-parent``: CPU and memory
pressure the target's own limits and accounting apply to), in the target's PID namespace, with
the target's volumes (``--volumes-from``: disk filling), or with no network at all.
:func:`start` starts one detached (a bounded load that outlives the call).

The image (Debian with iptables, iproute2 and stress-ng) is built on demand from the Dockerfile
that ships in this package (``lkchaos/network/nettools/Dockerfile``), and built again when that
Dockerfile changes: the image carries the file's SHA-256 as a label. Every call has a timeout;
failures raise :class:`SidecarError` saying what to do.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lkchaos import __version__
from lkchaos.docker.client import docker_client
from lkchaos.errors import LkChaosError
from lkchaos.network import rules

IMAGE = f"lkchaos/nettools:{__version__}"
#: Label on every sidecar container (its value: the target's container name).
SIDECAR_LABEL = "lkchaos.sidecar"
DIGEST_LABEL = "lkchaos.dockerfile.sha256"
#: Where the image's Dockerfile is, inside the ``lkchaos.network`` package.
DOCKERFILE = "nettools/Dockerfile"
RUN_TIMEOUT = 30.0
BUILD_TIMEOUT = 900.0
_EXITS = {3: "removing iptables rules", 4: "removing a qdisc", 5: "adding a qdisc (tc)",
          6: "adding iptables rules (iptables-restore)"}  # fmt: skip


class SidecarError(LkChaosError):
    """The sidecar could not be built or run, or its script failed."""


def dockerfile() -> bytes:
    """The sidecar image's Dockerfile, read from the installed package."""
    source = resources.files("lkchaos.network")
    for part in DOCKERFILE.split("/"):
        source = source / part
    try:
        return source.read_bytes()
    except OSError as exc:
        raise SidecarError(
            f"the network sidecar's Dockerfile (lkchaos/network/{DOCKERFILE}) is missing from "
            f"the installed lkchaos package ({exc}): reinstall lkchaos"
        ) from exc


def base_image(source: bytes) -> str:
    """The image a Dockerfile builds on: its first ``FROM`` (``debian:bookworm-slim``)."""
    for line in source.decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            return words[1]
    return "(no FROM line)"


def _image(client: Any) -> Any:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(IMAGE)
    except ImageNotFound:
        return None


def image_present(client: Any) -> bool:
    return _image(client) is not None


def ensure_image(client: Any) -> str:
    """The sidecar image's tag, after building it if it is missing or its Dockerfile changed.

    The build context is the packaged Dockerfile alone (it copies no file)."""
    from docker.errors import BuildError, DockerException

    source = dockerfile()
    digest = hashlib.sha256(source).hexdigest()
    image = _image(client)
    if image is not None and (image.labels or {}).get(DIGEST_LABEL) == digest:
        return IMAGE
    builder = docker_client(timeout=BUILD_TIMEOUT)
    try:
        builder.images.build(fileobj=io.BytesIO(source), tag=IMAGE, rm=True, forcerm=True,
                             labels={DIGEST_LABEL: digest})  # fmt: skip
    except BuildError as exc:
        tail = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)
        base = base_image(source)
        raise SidecarError(
            f"building the network sidecar image {IMAGE} failed: {exc.msg}\n"
            f"{tail[-1500:].strip()}\nIt needs the base image {base} (local or pullable: "
            f"`docker pull {base}`, or `lkchaos stack build` prepares it) and Debian's package "
            "mirror."
        ) from exc
    except DockerException as exc:
        raise SidecarError(f"building the network sidecar image {IMAGE} failed: {exc}") from exc
    finally:
        builder.close()
    return IMAGE


@dataclass(frozen=True)
class Options:
    """How a sidecar sits beside its target; the default is the network sidecar.

    ``network``: join the target's network namespace (else no network at all);
    ``net_admin``: with NET_ADMIN; ``pid``: ``"host"`` (the host's PID namespace),
    ``"target"`` (the target's) or ``""`` (its own); ``cgroup_parent``: a cgroup to run
    inside (the target's, so its limits apply); ``volumes_from``: mount the target's volumes
    at their paths; ``mounts``: volume names or host paths mounted at paths (even of a
    stopped target); ``labels``: more labels (:data:`SIDECAR_LABEL` is always set);
    ``what``: how errors name it; ``hint``: what errors advise when its script fails."""

    network: bool = True
    net_admin: bool = True
    pid: str = ""
    cgroup_parent: str = ""
    volumes_from: bool = False
    mounts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    what: str = "network sidecar"
    hint: str = ("The container needs iptables (nf_tables) and tc support in the kernel, and "
                 "the engine must allow NET_ADMIN.")  # fmt: skip


NETWORK = Options()


def create_kwargs(target: Any, options: Options) -> dict[str, Any]:
    """The Docker SDK's ``containers.create`` arguments for a sidecar of ``target``."""
    name = str(getattr(target, "name", target))
    kwargs: dict[str, Any] = {
        "network_mode": f"container:{target.id}" if options.network else "none",
        "labels": {SIDECAR_LABEL: name, **options.labels},
    }
    if options.net_admin:
        kwargs["cap_add"] = ["NET_ADMIN"]
    if options.pid:
        kwargs["pid_mode"] = "host" if options.pid == "host" else f"container:{target.id}"
    if options.cgroup_parent:
        kwargs["cgroup_parent"] = options.cgroup_parent
    if options.volumes_from:
        kwargs["volumes_from"] = [str(target.id)]
    if options.mounts:
        kwargs["volumes"] = {source: {"bind": path, "mode": "rw"}
                             for source, path in options.mounts.items()}  # fmt: skip
    return kwargs


def run(client: Any, target: Any, script: str, timeout: float = RUN_TIMEOUT,
        options: Options = NETWORK) -> str:  # fmt: skip
    """Run ``script`` with ``sh`` beside ``target`` (by default in its network namespace);
    its standard output."""
    from docker.errors import DockerException, ImageNotFound
    from requests.exceptions import RequestException

    name = str(getattr(target, "name", target))
    what = options.what

    def create() -> Any:
        return client.containers.create(IMAGE, ["sh", "-c", script],
                                        **create_kwargs(target, options))  # fmt: skip

    sidecar = None
    try:
        try:
            sidecar = create()
        except ImageNotFound:  # never built on this engine (or removed): build it, once
            ensure_image(client)
            sidecar = create()
        sidecar.start()
        status = int(sidecar.wait(timeout=timeout).get("StatusCode", -1))
        out = sidecar.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        err = sidecar.logs(stdout=False, stderr=True).decode("utf-8", "replace")
    # The engine's refusals first: docker's APIError is also a requests HTTPError.
    except DockerException as exc:
        where = f"in {name}'s network" if options == NETWORK else f"beside {name}"
        raise SidecarError(f"cannot run the {what} {where}: {exc}") from exc
    except RequestException as exc:  # a timeout, or the engine's socket gone
        raise SidecarError(f"the {what} in {name} did not finish in {timeout:.0f} s "
                           "(is the Docker engine overloaded?)") from exc  # fmt: skip
    finally:
        if sidecar is not None:
            try:
                sidecar.remove(force=True)
            except (DockerException, RequestException):
                pass  # the recovery sweep removes leftover sidecars
    if status != 0:
        step = _EXITS.get(status, f"its script (exit status {status})") if options == NETWORK \
            else f"its script (exit status {status})"
        raise SidecarError(
            f"the {what} failed {step} in {name}: {err.strip()[-800:] or out[-800:]}\n"
            f"{options.hint}"
        )
    return str(out)


def start(client: Any, target: Any, command: Sequence[str], options: Options) -> Any:
    """Start ``command`` detached beside ``target``; the engine removes the container when
    the command ends (bound it: ``timeout``, ``--timeout``). The started container."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    name = str(getattr(target, "name", target))
    sidecar = None
    try:
        sidecar = client.containers.create(IMAGE, list(command), auto_remove=True,
                                           **create_kwargs(target, options))  # fmt: skip
        sidecar.start()
        return sidecar
    except (DockerException, RequestException) as exc:
        if sidecar is not None:
            try:
                sidecar.remove(force=True)
            except (DockerException, RequestException):
                pass  # the recovery sweep removes leftover sidecars
        raise SidecarError(f"cannot start the {options.what} beside {name}: {exc}") from exc


def addresses(container: Any) -> list[str]:
    """The container's IPv4 addresses, on every network it is attached to."""
    container.reload()
    networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    return sorted({str(n["IPAddress"]) for n in networks.values() if n.get("IPAddress")})


def clear(
    client: Any, target: Any, kinds: Sequence[str] = rules.KINDS, delete: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Remove (or with ``delete=False`` only list) lkchaos rules and qdiscs of ``kinds``.

    A removal is verified in the same run: a listing after it must find none of them left,
    or :class:`SidecarError` says what stayed."""
    if not delete:
        return rules.parse_cleared(run(client, target, rules.clear_script(kinds, False)))
    output = run(client, target, rules.verified(rules.clear_script(kinds, True), kinds))
    try:
        head, tail = rules.split_verified(output)
    except rules.RuleError as exc:
        raise SidecarError(f"{exc} in {getattr(target, 'name', target)}") from exc
    left = rules.parse_cleared(tail)
    if left["rules"] or left["qdiscs"]:
        stayed = [r["rule"] for r in left["rules"]] + [q["qdisc"] for q in left["qdiscs"]]
        raise SidecarError(f"lkchaos rules or qdiscs stayed in {getattr(target, 'name', target)} "
                           f"after their removal: {stayed}")  # fmt: skip
    return rules.parse_cleared(head)


def remove_leftover_sidecars(client: Any) -> list[str]:
    """Remove sidecars that are no longer running (their runner died before removing them)."""
    from docker.errors import DockerException

    removed = []
    for sidecar in client.containers.list(all=True, filters={"label": SIDECAR_LABEL}):
        if sidecar.status != "running":
            try:
                sidecar.remove(force=True)
            except DockerException:
                continue
            removed.append(str(sidecar.name))
    return removed
