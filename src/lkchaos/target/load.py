"""Read a target file: every problem names its file, line and what to do.

Checked: YAML syntax and duplicate keys, the schema (:mod:`lkchaos.target.model`: types,
unknown keys with a "did you mean", inline secrets, exactly-one choices), node names unique
and ``roles.livekit_node`` agreeing with the nodes. Lines come from PyYAML's composed nodes
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

from pydantic import BaseModel, ValidationError

from lkchaos import yamlcheck
from lkchaos.target import model
from lkchaos.yamlcheck import FileInvalid, Location, Problem, in_line_order, key_problem, line_of

_SECRET_KEYS = {"api_key", "api_secret", "password_ref"}
#: The problem and fix of a file that holds no mapping.
_NOT_A_MAPPING = ("a target must be a mapping with livekit, redis, tls_proxy and runtime",
                  "see stack/targets/reference.yaml for an example")


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
    shown = ""
    if not secret and kind != "value_error" and not isinstance(value, dict | list):
        shown = f" (got {value!r})"
    # A problem of a whole mapping or list is shown at its key, where a block one starts.
    line = line_of(lines, (*where, "<key>") if isinstance(value, dict | list) else where)
    return Problem(path, line, f"{dotted}: {message}{shown}",
                   "see docs/targets.md for this key's form and an example")


def _cross(name: str, target: model.Target, lines: dict[Location, int]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, node in enumerate(target.livekit.nodes):
        if node.name in seen:
            problems.append(Problem(name, line_of(lines, ("livekit", "nodes", index, "name")),
                                    f"node name {node.name!r} is used twice",
                                    "give each node a name of its own"))
        seen.add(node.name)
    runtimes = [node.runtime for node in target.livekit.nodes]
    if target.roles.livekit_node and sorted(target.roles.livekit_node) != sorted(runtimes):
        problems.append(Problem(
            name, line_of(lines, ("roles", "livekit_node")),
            f"roles.livekit_node {target.roles.livekit_node} differs from the nodes' runtime "
            f"names {runtimes}", "leave roles.livekit_node out, or list the same names"))
    return problems


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
