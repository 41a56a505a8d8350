"""Which target file is in use: the one place that decides.

Order, first found wins:

1. ``--target FILE`` on the command line (the ``flag`` argument, else the one a command set
   for the whole process with :func:`target_for_process`, which every ``Settings.load`` of
   that process then sees);
2. the environment variable ``LKCHAOS_TARGET``;
3. the experiment's configuration key ``lkchaos_target`` (a plain value, or Chaos Toolkit's
   ``{"type": "env", "key": ...}`` which Chaos Toolkit resolves before lkchaos sees it);
4. the reference stack's own target, ``stack/targets/reference.yaml`` in the lkchaos
   checkout: ``LKCHAOS_ROOT`` when set, else the checkout this package runs from.

An empty value counts as unset. Relative paths are relative to the current folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError

ENV = "LKCHAOS_TARGET"
CONFIG_KEY = "lkchaos_target"
REFERENCE = Path("stack") / "targets" / "reference.yaml"

#: The ``--target`` of the command this process runs (see :func:`target_for_process`).
_process_flag: str | None = None


@contextmanager
def target_for_process(flag: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, ``flag`` counts as ``--target`` for every selection of this process
    (``None`` or ``""``: no flag). A command with a ``--target`` option wraps its work in it,
    so that the settings every activity loads name the same target."""
    global _process_flag
    before = _process_flag
    _process_flag = str(flag) if flag else None
    try:
        yield
    finally:
        _process_flag = before


class NoTargetError(ConfigError):
    """Nothing names a target file and no reference checkout is found."""


@dataclass(frozen=True)
class Selection:
    """The chosen target file (absolute) and what chose it: ``flag``, ``environment``,
    ``configuration`` or ``reference``."""

    path: Path
    source: str

    def describe(self) -> str:
        """E.g. ``/srv/lk/target.yaml (from $LKCHAOS_TARGET)``."""
        how = {"flag": "--target", "environment": f"${ENV}",
               "configuration": f"the configuration's {CONFIG_KEY}",
               "reference": "the reference stack's default"}[self.source]  # fmt: skip
        return f"{self.path} (from {how})"


def reference_target(environ: Mapping[str, str] | None = None) -> Path | None:
    """The reference stack's target file, or None when no lkchaos checkout is known."""
    env = os.environ if environ is None else environ
    roots = [Path(env["LKCHAOS_ROOT"])] if env.get("LKCHAOS_ROOT") else []
    # src/lkchaos/target/select.py -> the checkout holding src/
    roots.append(Path(__file__).resolve().parents[3])
    for root in roots:
        candidate = root / REFERENCE
        if candidate.is_file():
            return candidate.resolve()
    return None


def select_target(flag: str | os.PathLike[str] | None = None,
                  configuration: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Selection:  # fmt: skip
    """The target in use (see the module docstring for the order).

    ``environ`` defaults to ``os.environ``. Raises :class:`NoTargetError` (a
    :class:`ConfigError`) when nothing names a target and no reference checkout is found,
    and :class:`ConfigError` when the configuration's value is not a path. The file is not
    read here."""
    env = os.environ if environ is None else environ
    conf = configuration or {}
    if flag is None or str(flag) == "":
        flag = _process_flag
    for value, source in ((flag, "flag"), (env.get(ENV), "environment"),
                          (conf.get(CONFIG_KEY), "configuration")):  # fmt: skip
        if value is not None and str(value) != "":
            if not isinstance(value, (str, os.PathLike)):
                raise ConfigError(
                    f"the configuration's `{CONFIG_KEY}` must be the path of a target file "
                    f"(a string such as \"targets/prod.yaml\"), not {type(value).__name__} "
                    f"{value!r} (see docs/targets.md)"
                )
            return Selection(Path(value).expanduser().resolve(), source)
    reference = reference_target(env)
    if reference is None:
        raise NoTargetError(
            f"no target file: pass --target FILE, set {ENV}, or set `{CONFIG_KEY}` in the "
            "experiment's configuration (see docs/targets.md)"
        )
    return Selection(reference, "reference")
