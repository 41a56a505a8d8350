"""Read a target file: every problem names its file, line and what to do.

Checked: YAML syntax, duplicate keys and recursive aliases, the schema
(:mod:`lkchaos.target.model`: types, unknown keys with a "did you mean", inline secrets,
exactly-one choices, runtime names, addresses), each node's name, runtime name and URL its own,
``roles.livekit_node`` listing the nodes' runtime names in their order, and the voice prober
playing no other role. Lines come from PyYAML's composed nodes
(:mod:`lkchaos.yamlcheck`): a schema error's location (``livekit.nodes.0.url``) is
mapped to that node's line, or to the nearest enclosing one. Secrets are not resolved here,
and no value under a secret's key is ever quoted in a problem.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from lkchaos import yamlcheck
from lkchaos.target import model
from lkchaos.yamlcheck import FileInvalid, Location, Problem, in_line_order, key_problem, line_of

_SECRET_KEYS = {"api_key", "api_secret", "password_ref", "sentinel_password_ref"}
#: The problem and fix of a file that holds no mapping.
_NOT_A_MAPPING = ("a target must be a mapping with livekit, redis, tls_proxy and runtime",
                  "see stack/targets/reference.yaml for an example")
#: The roles that take a list of runtime names; every other takes one.
_LIST_ROLES = ("livekit_node", "redis_replica", "sentinel", "metrics_exporter")
#: What to write at a key whose value has the wrong type, where a key's own form says more
#: than "a mapping with keys ...".
_FORMS = {
    ("tls_proxy", "reload"): "write one of {signal: SIGHUP}, {command: [caddy, reload, ...]}, "
                             "{admin_api: URL}, or `none` (or leave reload out)",
    ("redis",): "write `redis: {direct: {primary: HOST:PORT}}` or "
                "`redis: {sentinel: {addresses: [HOST:PORT, ...], master: NAME}}`",
    ("runtime",): "write `runtime: {compose: {project: NAME}}` or `runtime: {docker: {by: name}}`",
}  # fmt: skip


class TargetInvalid(FileInvalid):
    """A target file with problems; ``problems`` lists them all, in line order."""


@dataclass(frozen=True)
class LoadedTarget:
    """A valid target and the file it came from (``folder``: base of relative paths)."""

    target: model.Target
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent


def _unwrap(annotation: Any) -> Any:
    """The model or container inside ``X | None`` and ``Annotated[X, ...]``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _keys_at(where: Location) -> list[str]:
    """The keys the mapping holding ``where[-1]`` accepts (for "did you mean")."""
    current: Any = model.Target
    for part in where[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        else:
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return model.field_names(current)
    if typing.get_origin(current) is dict:  # a mapping keyed by a Literal (links)
        key = _unwrap(typing.get_args(current)[0])
        return [str(arg) for arg in typing.get_args(key)]
    return []


def _schema_problem(path: str, error: Any, lines: dict[Location, int]) -> Problem:
    where: Location = tuple(error["loc"])
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    dotted = ".".join(str(part) for part in where) or "the file"
    secret = any(part in _SECRET_KEYS for part in where)
    if where[-1:] == ("[key]",):  # a mapping keyed by a fixed set (toxiproxy.links)
        where, kind = where[:-1], "extra_forbidden"
        dotted = ".".join(str(part) for part in where)
    common = key_problem(path, error, lines, where, kind, known_keys=_keys_at,
                         missing_fix=" (see docs/targets.md)")
    if common is not None:
        return common
    value = error.get("input")
    if message == model.INLINE_SECRET:
        return Problem(path, line_of(lines, where), f"{dotted}: {message}",
                       "move the value to an environment variable or a secrets file")
    if message == model.KUBERNETES:
        return Problem(path, line_of(lines, (*where, "<key>")), message,
                       "use `compose:` or `docker:` for now")  # fmt: skip
    # A problem of a whole mapping or list is shown at its key, where a block one starts.
    line = line_of(lines, (*where, "<key>") if isinstance(value, dict | list | None) else where)
    if kind == "value_error":
        return Problem(path, line, f"{dotted}: {message}",
                       "see docs/targets.md for this key's form and an example")
    got = "" if secret else f" (got {_described(value)})"
    return Problem(path, line, f"{dotted}: {_wanted(where, kind, error)}{got}",
                   "see docs/targets.md for this key's form and an example")


def _described(value: Any) -> str:
    """A value's kind in the file's terms (its text for a short scalar)."""
    if value is None:
        return "nothing"
    if isinstance(value, dict | list):
        kind = "a mapping" if isinstance(value, dict) else "a list"
        return kind if value else kind.replace("a ", "an empty ")
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wanted(where: Location, kind: str, error: Any) -> str:
    """What to write at ``where`` instead of a value of the wrong type or size."""
    at = tuple(part for part in where if not isinstance(part, int))
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if where[-1:] and where[-1] in _SECRET_KEYS:
            return "write {env: NAME} or {file: PATH, key: NAME}"
        if at in _FORMS:
            return _FORMS[at]
        keys = _keys_at((*where, ""))
        return f"write a mapping here (keys: {', '.join(keys)})" if keys else "write a mapping here"
    if kind == "string_type":
        if where[:1] == ("roles",) and isinstance(error.get("input"), list | dict):
            return (f"write one runtime name: only {', '.join(_LIST_ROLES)} take a list "
                    "(roles.NAME: [a, b])")
        return "write one text value here (quote a number or true/false to make it text)"
    if kind == "list_type":
        return "write a list here: [a, b], or one item per `- ` line"
    if kind == "bool_type":
        return "write true or false"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "write a whole number here (not quoted)"
    if kind == "greater_than_equal":
        return f"write a whole number of at least {error.get('ctx', {}).get('ge')}"
    if kind == "less_than_equal":
        return f"write a whole number of at most {error.get('ctx', {}).get('le')}"
    if kind == "too_short":
        count = error.get("ctx", {}).get("min_length", 1)
        return f"give at least {count} item{'s' if count != 1 else ''}"
    if kind == "string_too_short":
        return "write a value here, not an empty text"
    return str(error["msg"])


def _url_key(url: str) -> str:
    """A node URL as compared with the others': scheme and host in lower case, the port
    spelt out, no trailing slash."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{parts.hostname}:{port}{parts.path.rstrip('/')}"


def _nodes(name: str, target: model.Target, lines: dict[Location, int]) -> list[Problem]:
    """Each node's name, runtime name and URL its own."""
    problems: list[Problem] = []
    nodes = target.livekit.nodes
    first: dict[tuple[str, str], int] = {}
    fixes = {"runtime": "each node is a container of its own: give each its own runtime name",
             "url": "give each node its own URL (the HTTP API of that node)"}  # fmt: skip
    for index, node in enumerate(nodes):
        at = ("livekit", "nodes", index)
        if first.setdefault(("name", node.name), index) != index:
            problems.append(Problem(name, line_of(lines, (*at, "name")),
                                    f"node name {node.name!r} is used twice",
                                    "give each node a name of its own"))
        for key, value, compared in (("runtime", node.runtime, node.runtime),
                                     ("url", node.url, _url_key(node.url))):  # fmt: skip
            other = first.setdefault((key, compared), index)
            if other != index:
                problems.append(Problem(
                    name, line_of(lines, (*at, key)),
                    f"nodes {nodes[other].name} and {node.name} have the same {key} {value}",
                    fixes[key]))
    return problems


def _cross(name: str, target: model.Target, lines: dict[Location, int]) -> list[Problem]:
    problems = _nodes(name, target, lines)
    runtimes = [node.runtime for node in target.livekit.nodes]
    listed = list(target.roles.livekit_node)
    at = line_of(lines, ("roles", "livekit_node"))
    if listed and sorted(listed) != sorted(runtimes):
        problems.append(Problem(
            name, at, f"roles.livekit_node {listed} differs from the nodes' runtime "
            f"names {runtimes}", "leave roles.livekit_node out, or list the same names"))
    elif listed and listed != runtimes:
        problems.append(Problem(
            name, at, f"list roles.livekit_node in the order of livekit.nodes: "
            f"{', '.join(runtimes)} (experiments name livekit_node:2 for the second node)",
            "reorder roles.livekit_node, or leave it out (it defaults to the nodes' runtime "
            "names)"))
    prober = target.roles.voice_prober
    for role, names in target.role_names().items():
        if prober and role != "voice_prober" and prober in names:
            where = f"roles.{role}" if role != "livekit_node" or listed else "livekit.nodes"
            problems.append(Problem(
                name, line_of(lines, ("roles", "voice_prober")),
                f"roles.voice_prober {prober!r}: the voice prober is lkchaos's test harness and "
                f"cannot also be the {role.replace('_', ' ')} ({where})",
                "run the prober in a container of its own, or leave roles.voice_prober out"))
    return problems


def _cross_of_parts(name: str, data: Any, lines: dict[Location, int]) -> list[Problem]:
    """The checks across fields (:func:`_cross`) of a file whose schema failed elsewhere,
    when its ``livekit`` and ``roles`` sections validate on their own: every problem is
    said at once, not the second half after the first is corrected."""
    if not isinstance(data, dict):
        return []
    try:
        livekit = model.LiveKit.model_validate(data.get("livekit"))
        roles = model.Roles.model_validate(data.get("roles") or {})
    except ValidationError:
        return []
    parts = model.Target.model_construct(livekit=livekit, roles=roles)
    return _cross(name, parts, lines)


def check_target(path: str | Path) -> tuple[LoadedTarget | None, list[Problem]]:
    """The target and every problem of its file (an empty list: it is valid). The target is
    None when the file does not validate."""
    file = Path(path)
    name = str(path)
    data, lines, problems = yamlcheck.parse(file, not_mapping=_NOT_A_MAPPING,
                                            quote_errors=False)
    if not data:
        return None, problems
    try:
        target = model.Target.model_validate(data)
    except ValidationError as exc:
        problems += [_schema_problem(name, error, lines) for error in exc.errors()]
        problems += _cross_of_parts(name, data, lines)
        return None, in_line_order(problems)
    problems += _cross(name, target, lines)
    problems.sort(key=lambda problem: problem.line)
    return (None if problems else LoadedTarget(target, file.resolve())), problems


def load_target(path: str | Path) -> LoadedTarget:
    """The valid target of ``path``; raises :class:`TargetInvalid` listing every problem."""
    loaded, problems = check_target(path)
    if loaded is None:
        raise TargetInvalid(problems)
    return loaded
