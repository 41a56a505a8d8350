"""The game day file's schema: an ordered suite of experiments with per-entry knobs.

A game day is a YAML mapping (see docs/gamedays.md)::

    name: quick                  # [a-z0-9-]+
    description: ...
    schedule: "0 3 * * 1"        # optional cron: 5 fields, or 6 with leading seconds
    baseline: {experiment: ../experiments/stack-healthy.json, timeout_s: 120}
    recovery_wait_s: 10
    stop: on_not_recovered       # | on_deviation | never
    fault_s: 20
    entries:
      - {experiment: ../experiments/agent-crash.json, name: agent-crash, repeats: 1,
         fault_s: 8, configuration: {key: value}, weight: 1}

Paths are relative to the game day file. Unknown keys are refused. Validation here is the
schema alone; :mod:`lkchaos.gameday.check` adds the file, line and fix, and checks the
experiments themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"

StopRule = Literal["on_not_recovered", "on_deviation", "never"]
Outcome = Literal["held", "deviated", "failed", "not_recovered", "skipped", "interrupted"]
ConfigValue = StrictStr | StrictInt | StrictFloat

#: Seconds, the ranges of every knob.
FAULT_S = (1, 3600)
REPEATS = (1, 20)
TIMEOUT_S = (1, 3600)
RECOVERY_WAIT_S = (0, 3600)
#: An entry's run may last this long at most (``timeout_s``; default ENTRY_TIMEOUT_DEFAULT_S).
ENTRY_TIMEOUT_S = (10, 86400)
ENTRY_TIMEOUT_DEFAULT_S = 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Baseline(_Strict):
    """The experiment that must hold before each entry and after the last one."""

    experiment: str = Field(min_length=1)
    timeout_s: Annotated[StrictFloat, Field(ge=TIMEOUT_S[0], le=TIMEOUT_S[1])] = 120


class Entry(_Strict):
    """One experiment of the suite, run ``repeats`` times in a row."""

    experiment: str = Field(min_length=1)
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)] | None = None
    repeats: Annotated[StrictInt, Field(ge=REPEATS[0], le=REPEATS[1])] = 1
    fault_s: Annotated[StrictFloat, Field(ge=FAULT_S[0], le=FAULT_S[1])] | None = None
    configuration: dict[str, ConfigValue] = Field(default_factory=dict)
    weight: Annotated[StrictFloat, Field(gt=0, le=100)] = 1
    #: Seconds one run of the entry may last; past it the run is interrupted (its rollbacks
    #: and lkchaos's recovery play) and the entry ends ``interrupted``.
    timeout_s: Annotated[StrictFloat, Field(ge=ENTRY_TIMEOUT_S[0], le=ENTRY_TIMEOUT_S[1])] = (
        ENTRY_TIMEOUT_DEFAULT_S)

    @property
    def label(self) -> str:
        """The entry's name: its ``name``, else the experiment file's stem."""
        return self.name or Path(self.experiment).stem

    @field_validator("configuration")
    @classmethod
    def _keys(cls, value: dict[str, ConfigValue]) -> dict[str, ConfigValue]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"configuration key {key!r} is not an identifier")
        return value


class Gameday(_Strict):
    """A whole game day file."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    description: str = ""
    schedule: str | None = None
    baseline: Baseline | None = None
    recovery_wait_s: Annotated[StrictFloat, Field(ge=RECOVERY_WAIT_S[0],
                                                  le=RECOVERY_WAIT_S[1])] = 10
    stop: StopRule = "on_not_recovered"
    fault_s: Annotated[StrictFloat, Field(ge=FAULT_S[0], le=FAULT_S[1])] | None = None
    entries: list[Entry] = Field(min_length=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from lkchaos.gameday.cron import parse_cron

            parse_cron(value)  # raises ValueError with the reason
        return value


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a mapping of this model accepts."""
    return list(model.model_fields)
