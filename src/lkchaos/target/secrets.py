"""Resolve a target's secret references, only when asked; values are never kept or shown.

``{env: NAME}`` reads the environment variable. ``{file: PATH}`` reads the whole file,
stripped; ``{file: PATH, key: NAME}`` reads ``NAME=value`` lines (an env file: blank lines,
``#`` comments, ``export`` and surrounding quotes allowed), or a mapping when ``PATH`` ends in
``.yaml``, ``.yml`` or ``.json``. ``{state_dir}`` in ``PATH`` is lkchaos's state folder; a
relative ``PATH`` is relative to the target file's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from lkchaos.errors import ConfigError
from lkchaos.target.model import SecretRef

MASK = "***"


class SecretUnavailable(ConfigError):
    """A secret reference that does not resolve; the message names the reference only."""


def state_dir() -> Path:
    """lkchaos's state folder (absolute), as :class:`lkchaos.settings.Settings` chooses it."""
    from lkchaos.settings import default_state_dir

    return default_state_dir()


def expand_path(text: str, base: Path, state: Path | None = None) -> Path:
    """``text`` with ``{state_dir}`` and ``~`` expanded, made absolute against ``base``."""
    if "{state_dir}" in text:
        text = text.replace("{state_dir}", str(state if state is not None else state_dir()))
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def _env_file(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def resolve(ref: SecretRef, base: Path, *, state: Path | None = None,
            environ: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """The secret's value (a non-empty string).

    ``base``: the target file's folder; ``state``: the state folder for ``{state_dir}``
    (chosen as Settings does when None); ``environ``: defaults to ``os.environ``.
    Raises :class:`SecretUnavailable` saying which reference failed and what to do."""
    env = os.environ if environ is None else environ
    if ref.env is not None:
        value = env.get(ref.env, "")
        if not value:
            raise SecretUnavailable(f"{ref.describe()}: the environment variable {ref.env} is "
                                    "not set or empty; export it before running lkchaos")
        return value
    assert ref.file is not None
    path = expand_path(ref.file, base, state)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretUnavailable(f"{ref.describe()}: cannot read {path} "
                                f"({type(exc).__name__}); check the path and its permissions"
                                ) from None  # fmt: skip
    if ref.key is None:
        value = text.strip()
    else:
        if path.suffix in (".yaml", ".yml", ".json"):
            try:
                data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError):
                # The parser's message may quote the file's content: it is not shown.
                raise SecretUnavailable(f"{ref.describe()}: {path} is not a valid "
                                        f"{path.suffix[1:].upper()} mapping") from None
            found = data.get(ref.key) if isinstance(data, dict) else None
            value = "" if found is None else str(found)
        else:
            value = _env_file(text).get(ref.key, "")
    if not value:
        raise SecretUnavailable(f"{ref.describe()}: {path} has no non-empty "
                                f"{ref.key or 'content'}; add it there")  # fmt: skip
    return value
