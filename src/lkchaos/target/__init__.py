"""The deployment under test, described by a target file (docs/targets.md).

Public API::

    select_target(flag, configuration, environ) -> Selection     which file is in use
    load_target(path) -> LoadedTarget                            or TargetInvalid
    check_target(path) -> (LoadedTarget | None, [Problem])       every problem, with lines
    settings_values(loaded) -> {Settings field: value}           today's Settings, from it
    missing(target, "module.func") -> [reason]                   what an activity lacks

The names are imported when first used: :mod:`lkchaos.settings` imports
:mod:`lkchaos.target.select` on every load, and that must not import the schema's parser
(pydantic, PyYAML) where no target file is in use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lkchaos.target.convert import settings_values
    from lkchaos.target.load import LoadedTarget, TargetInvalid, check_target, load_target
    from lkchaos.target.model import SecretRef, Target
    from lkchaos.target.needs import NEEDS, catalogue, missing
    from lkchaos.target.secrets import SecretUnavailable
    from lkchaos.target.select import Selection, select_target
    from lkchaos.yamlcheck import Problem

#: Public name -> the module that defines it.
_WHERE = {
    "NEEDS": "lkchaos.target.needs",
    "LoadedTarget": "lkchaos.target.load",
    "Problem": "lkchaos.yamlcheck",
    "SecretRef": "lkchaos.target.model",
    "SecretUnavailable": "lkchaos.target.secrets",
    "Selection": "lkchaos.target.select",
    "Target": "lkchaos.target.model",
    "TargetInvalid": "lkchaos.target.load",
    "catalogue": "lkchaos.target.needs",
    "check_target": "lkchaos.target.load",
    "load_target": "lkchaos.target.load",
    "missing": "lkchaos.target.needs",
    "select_target": "lkchaos.target.select",
    "settings_values": "lkchaos.target.convert",
}

__all__ = [
    "NEEDS",
    "LoadedTarget",
    "Problem",
    "SecretRef",
    "SecretUnavailable",
    "Selection",
    "Target",
    "TargetInvalid",
    "catalogue",
    "check_target",
    "load_target",
    "missing",
    "select_target",
    "settings_values",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
