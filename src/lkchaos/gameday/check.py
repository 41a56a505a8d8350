"""Check a game day file before anything runs; every problem names its file, line and fix.

Checked: YAML syntax and duplicate keys; the schema (:mod:`lkchaos.gameday.model`: types,
ranges, unknown keys with a "did you mean"); the cron expression; entry names unique; every
experiment (the baseline's too) exists, is JSON, passes ``lkchaos check --offline``
(:func:`lkchaos.preflight.check_file`) and Chaos Toolkit's own validation.

Lines come from PyYAML's composed nodes (:mod:`lkchaos.yamlcheck`): each schema error's
location (``entries.2.fault_s``) is mapped to the line of that node, or of the nearest
enclosing one that exists.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lkchaos import yamlcheck
from lkchaos.gameday import model
from lkchaos.yamlcheck import FileInvalid, Location, Problem, in_line_order, key_problem, line_of

#: Trailing parts pydantic adds to a location for each member of a union that failed.
_UNION_TAGS = ("str", "int", "float")

_RANGES = {"fault_s": model.FAULT_S, "repeats": model.REPEATS, "timeout_s": model.TIMEOUT_S,
           "recovery_wait_s": model.RECOVERY_WAIT_S, "weight": (0, 100)}
#: The problem and fix of a file that holds no mapping.
_NOT_A_MAPPING = ("a game day must be a mapping with a name and entries",
                  "see gamedays/quick.yaml for an example")


def _field_range(where: Location) -> tuple[float, float] | None:
    """The bounds (``ge``, ``le``) of the field at ``where`` in its own model: a knob's name
    alone is not enough (``timeout_s`` is 1-3600 on the baseline, 10-86400 on an entry)."""
    import annotated_types

    if not where:
        return None
    try:
        field = _model_at(where).model_fields.get(str(where[-1]))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    if field is None:
        return None
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    return low, high


class GamedayInvalid(FileInvalid):
    """A game day file with problems; ``problems`` lists them all."""


def _model_at(where: Location) -> type[BaseModel]:
    """The model whose mapping holds the key at ``where`` (for "did you mean")."""
    if len(where) >= 3 and where[0] == "entries":
        return model.Entry
    if len(where) >= 2 and where[0] == "baseline":
        return model.Baseline
    return model.Gameday


def _numeric_text(value: str) -> bool:
    """Whether Python reads ``value`` as a finite number (YAML may have read it as text)."""
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _schema_problem(path: str, error: Any, lines: dict[Location, int]) -> Problem:
    where: Location = tuple(error["loc"])
    kind, message = error["type"], error["msg"]
    common = key_problem(path, error, lines, where, kind,
                         known_keys=lambda at: model.field_names(_model_at(at)))
    if common is not None:
        return common
    dotted = ".".join(str(part) for part in where) or "the file"
    value = error.get("input")
    if where and where[-1] in _UNION_TAGS:  # a configuration value of none of the types
        where = where[:-1]
        return Problem(path, line_of(lines, where),
                       f"{'.'.join(map(str, where))} must be a string or a number "
                       f"(got {type(value).__name__})",
                       "write a plain value; Chaos Toolkit passes it as `--var key=value`")
    shown = "" if kind == "value_error" or isinstance(value, dict | list) else f" (got {value!r})"
    fix = {
        "string_pattern_mismatch": "use lower-case letters, digits and dashes",
        "too_short": "add at least one item",
    }.get(kind, "see docs/gamedays.md for this knob's type and range")
    knob = str(where[-1]) if where else ""
    bounds = _field_range(where) or _RANGES.get(knob)
    if bounds is not None:
        low, high = bounds
        fix = f"use a number from {low} to {high}"
        if knob == "weight":
            fix = f"use a number greater than {low}, up to {high}"
    if knob == "schedule":
        fix = ("write 5 cron fields (minute hour day month weekday), 6 with leading seconds, "
               "or a nickname such as @daily")
    if isinstance(value, str) and _numeric_text(value) and "number" in message:
        fix = (f"{fix}, written plainly (e.g. {float(value):g}): YAML read {value!r} as "
               f"text, quoted or in a form it does not take for a number, such as 1e1")
    message = message.removeprefix("Value error, ")
    return Problem(path, line_of(lines, where), f"{dotted}: {message}{shown}", fix)


@contextmanager
def _quiet_toolkit() -> Iterator[None]:
    """Chaos Toolkit logs its validation at INFO; the checker reports problems itself."""
    logger = logging.getLogger("chaostoolkit")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def experiment_problems(experiment: Path) -> list[str]:
    """What is wrong with one experiment file: missing, not JSON, ``lkchaos check --offline``
    errors, Chaos Toolkit's validation. An empty list: it may run."""
    from chaoslib.experiment import ensure_experiment_is_valid

    from lkchaos.preflight import ExperimentFileError, check_file, errors

    if experiment.is_dir():
        return [f"experiment {str(experiment)!r} is a folder: name an experiment file in it "
                "(e.g. experiments/agent-crash.json)"]
    if not experiment.is_file():
        return [f"experiment {str(experiment)!r} does not exist"]
    try:  # JSON or YAML, as `chaos run` takes them
        failing = errors(check_file(experiment, offline=True))
    except ExperimentFileError as exc:
        return [str(exc)]
    if failing:
        return [f"`lkchaos check --offline {experiment}`: {problem}" for problem in failing]
    from lkchaos.preflight import load_file

    try:
        with _quiet_toolkit():
            ensure_experiment_is_valid(load_file(experiment))
    except Exception as exc:  # any of Chaos Toolkit's validation errors refuses the file
        return [f"Chaos Toolkit refuses {str(experiment)!r}: {exc}"]
    return []


def override_problems(experiment: Path, overrides: Mapping[str, Any]) -> list[str]:
    """What is wrong with an entry's ``configuration`` overrides of a valid ``experiment``:
    a key the experiment does not declare (the override would change nothing), or a value
    that makes the experiment's own check fail (a fault window of "abc")."""
    from lkchaos.preflight import check_experiment, errors, load_file
    from lkchaos.settings import ENV_KEYS
    from lkchaos.target.select import CONFIG_KEY

    loaded = load_file(experiment)
    raw = loaded.get("configuration")
    declared: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
    # lkchaos's own settings (livekit_url, lkchaos_target, ...) are read from any experiment.
    unknown = sorted(set(overrides) - set(declared) - set(ENV_KEYS) - {CONFIG_KEY})
    if unknown:
        have = ", ".join(sorted(declared)) or "none"
        return [f"configuration {', '.join(map(repr, unknown))}: not a configuration key of "
                f"{experiment.name} (it has: {have}) nor an lkchaos setting; an override of a "
                f"key the experiment does not read changes nothing"]
    changed = {**loaded, "configuration": {**declared, **overrides}}
    return [f"with this entry's configuration, `lkchaos check --offline {experiment}`: {p}"
            for p in errors(check_experiment(changed, deployment=False))]


def _experiments(path: str, gameday: model.Gameday,
                 lines: dict[Location, int]) -> list[Problem]:  # fmt: skip
    base = Path(path).resolve().parent
    wanted: list[tuple[str, Location]] = []
    if gameday.baseline is not None:
        wanted.append((gameday.baseline.experiment, ("baseline", "experiment")))
    wanted += [(entry.experiment, ("entries", i, "experiment"))
               for i, entry in enumerate(gameday.entries)]
    problems: list[Problem] = []
    cache: dict[Path, list[str]] = {}
    for relative, where in wanted:
        target = (base / relative).resolve()
        if target not in cache:
            cache[target] = experiment_problems(target)
        fix = ("paths are relative to the game day file" if not target.is_file()
               else "fix the experiment (see `lkchaos check --offline` for every problem)")
        problems += [Problem(path, line_of(lines, where), text, fix) for text in cache[target]]
        index = where[1]
        if where[0] != "entries" or not isinstance(index, int) or cache[target]:
            continue
        overrides = gameday.entries[index].configuration
        if overrides:
            at = line_of(lines, ("entries", index, "configuration"))
            problems += [Problem(path, at, text, "fix the entry's `configuration:`")
                         for text in override_problems(target, overrides)]  # fmt: skip
    return problems


def _names(path: str, gameday: model.Gameday, lines: dict[Location, int]) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for index, entry in enumerate(gameday.entries):
        if entry.label in seen:
            problems.append(Problem(
                path, line_of(lines, ("entries", index)),
                f"entry name {entry.label!r} is used by entry {seen[entry.label] + 1} too",
                "give one of them a `name:` of its own (names must be unique)"))
        seen.setdefault(entry.label, index)
    return problems


def check_gameday(path: str | Path, *, experiments: bool = True,
                  ) -> tuple[model.Gameday | None, list[Problem]]:  # fmt: skip
    """The game day and every problem of its file (an empty list: it may run).

    ``experiments=False`` skips the experiment files (schema, cron and names only). The game
    day is None when its schema does not validate.
    """
    name = str(path)
    data, lines, problems = yamlcheck.parse(path, not_mapping=_NOT_A_MAPPING)
    if not data:
        return None, problems
    try:
        gameday = model.Gameday.model_validate(data)
    except ValidationError as exc:
        problems += [_schema_problem(name, error, lines) for error in exc.errors()]
        return None, in_line_order(problems)
    problems += _names(name, gameday, lines)
    if experiments:
        problems += _experiments(name, gameday, lines)
    return gameday, in_line_order(problems)


def load_gameday(path: str | Path) -> model.Gameday:
    """The checked game day; raises :class:`GamedayInvalid` listing every problem."""
    gameday, problems = check_gameday(path)
    if problems or gameday is None:
        raise GamedayInvalid(problems)
    return gameday
