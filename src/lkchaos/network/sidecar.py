"""The network-fault sidecar: a short-lived container in a target's network namespace.

``docker run --rm --network container:<target> --cap-add NET_ADMIN lkchaos/nettools:<version>
sh -c <script>``, through the Docker SDK, with a timeout. The image (``actions/Dockerfile``:
Debian with iptables and iproute2) is built on demand, and again when that Dockerfile changes.
Every call has a timeout; failures raise :class:`SidecarError` saying what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lkchaos import __version__
from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.network import rules

IMAGE = f"lkchaos/nettools:{__version__}"
#: Label on every sidecar container (its value: the target's container name).
SIDECAR_LABEL = "lkchaos.sidecar"
DIGEST_LABEL = "lkchaos.dockerfile.sha256"
RUN_TIMEOUT = 30.0
BUILD_TIMEOUT = 900.0
_EXITS = {3: "removing iptables rules", 4: "removing a qdisc", 5: "adding a qdisc (tc)",
          6: "adding iptables rules (iptables-restore)"}  # fmt: skip


class SidecarError(LkChaosError):
    """The sidecar could not be built or run, or its script failed."""


def dockerfile() -> Path | None:
    """``actions/Dockerfile`` of the lkchaos checkout, or None outside one."""
    from lkchaos.stack.layout import StackPaths

    try:
        path = StackPaths.discover().root / "actions" / "Dockerfile"
    except ConfigError:
        return None
    return path if path.is_file() else None


def _image(client: Any) -> Any:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(IMAGE)
    except ImageNotFound:
        return None


def image_present(client: Any) -> bool:
    return _image(client) is not None


def ensure_image(client: Any) -> str:
    """The sidecar image's tag, after building it if it is missing or its Dockerfile changed."""
    from docker.errors import BuildError, DockerException

    from lkchaos.stack.compose import docker_client

    source = dockerfile()
    image = _image(client)
    digest = hashlib.sha256(source.read_bytes()).hexdigest() if source else ""
    if image is not None and (not source or image.labels.get(DIGEST_LABEL) == digest):
        return IMAGE
    if source is None:
        raise SidecarError(
            f"the network sidecar image {IMAGE} is missing and actions/Dockerfile was not found: "
            "run lkchaos from its checkout (or set LKCHAOS_ROOT), or build it there with "
            f"`docker build -t {IMAGE} actions/`"
        )
    builder = docker_client(timeout=BUILD_TIMEOUT)
    try:
        builder.images.build(path=str(source.parent), dockerfile=source.name, tag=IMAGE,
                             rm=True, forcerm=True, labels={DIGEST_LABEL: digest})  # fmt: skip
    except BuildError as exc:
        tail = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)
        raise SidecarError(
            f"building the network sidecar image {IMAGE} from {source} failed: {exc.msg}\n"
            f"{tail[-1500:].strip()}\nIt needs the base image debian:bookworm-slim (local or "
            "pullable) and Debian's package mirror; `lkchaos stack build` prepares the base image."
        ) from exc
    except DockerException as exc:
        raise SidecarError(f"building the network sidecar image {IMAGE} failed: {exc}") from exc
    finally:
        builder.close()
    return IMAGE


def run(client: Any, target: Any, script: str, timeout: float = RUN_TIMEOUT) -> str:
    """Run ``script`` with ``sh`` in ``target``'s network namespace; its standard output."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    name = str(getattr(target, "name", target))
    sidecar = None
    try:
        sidecar = client.containers.create(
            IMAGE, ["sh", "-c", script], network_mode=f"container:{target.id}",
            cap_add=["NET_ADMIN"], labels={SIDECAR_LABEL: name},
        )  # fmt: skip
        sidecar.start()
        status = int(sidecar.wait(timeout=timeout).get("StatusCode", -1))
        out = sidecar.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        err = sidecar.logs(stdout=False, stderr=True).decode("utf-8", "replace")
    except RequestException as exc:
        raise SidecarError(f"the network sidecar in {name} did not finish in {timeout:.0f} s "
                           "(is the Docker engine overloaded?)") from exc  # fmt: skip
    except DockerException as exc:
        raise SidecarError(f"cannot run the network sidecar in {name}'s network: {exc}") from exc
    finally:
        if sidecar is not None:
            try:
                sidecar.remove(force=True)
            except (DockerException, RequestException):
                pass  # the recovery sweep removes leftover sidecars
    if status != 0:
        step = _EXITS.get(status, f"its script (exit status {status})")
        raise SidecarError(
            f"the network sidecar failed {step} in {name}: {err.strip()[-800:] or out[-800:]}\n"
            "The container needs iptables (nf_tables) and tc support in the kernel, and the "
            "engine must allow NET_ADMIN."
        )
    return str(out)


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


def sweep(project: str) -> list[dict[str, Any]]:
    """Remove every lkchaos rule and qdisc from the project's running containers.

    Without the sidecar image on this engine, no network fault can have been injected here,
    and only leftover sidecars are looked for.
    """
    from lkchaos.docker.client import project_containers
    from lkchaos.stack.compose import docker_client

    client = docker_client()
    try:
        done = [{"fault": f"network sidecar {name} left behind", "outcome": "removed"}
                for name in remove_leftover_sidecars(client)]  # fmt: skip
        if not image_present(client):
            return done
        for service, container in sorted(project_containers(client, project).items()):
            if container.status != "running":
                continue
            try:
                found = clear(client, container)
            except LkChaosError as exc:
                done.append({"fault": f"network faults on {service}", "outcome": f"error: {exc}"})
                continue
            done += [{"fault": f"{r['kind']} rule on {service}: {r['rule']}", "outcome": "removed"}
                     for r in found["rules"]]  # fmt: skip
            done += [{"fault": f"qdisc {q['qdisc']} on {service} {q['device']}",
                      "outcome": "removed"} for q in found["qdiscs"]]  # fmt: skip
    finally:
        client.close()
    return done
