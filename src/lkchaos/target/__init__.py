"""The deployment under test, described by a target file (docs/targets.md).

Public API::

    select_target(flag, configuration, environ) -> Selection     which file is in use
    load_target(path) -> LoadedTarget                            or TargetInvalid
    check_target(path) -> (LoadedTarget | None, [Problem])       every problem, with lines
    settings_values(loaded) -> {Settings field: value}           today's Settings, from it
    missing(target, "module.func") -> [reason]                   what an activity lacks
"""

from lkchaos.target.convert import settings_values
from lkchaos.target.load import LoadedTarget, TargetInvalid, check_target, load_target
from lkchaos.target.model import SecretRef, Target
from lkchaos.target.needs import NEEDS, catalogue, missing
from lkchaos.target.secrets import SecretUnavailable
from lkchaos.target.select import Selection, select_target
from lkchaos.yamlcheck import Problem

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
