"""Cron expressions for game day schedules, parsed with APScheduler 3's ``CronTrigger``.

Five fields (``minute hour day month day_of_week``) as in crontab, or six with a leading
``second`` field for short test intervals (``*/5 * * * * *``). Day-of-week numbers mean what
they mean in crontab (0 and 7 are Sunday, 1 is Monday): APScheduler 3 counts from Monday, so
numbers are translated to day names before it reads them.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day_item(item: str) -> str:
    base, _, step_text = item.partition("/")
    if re.search(r"[a-z]", base, re.IGNORECASE):
        return item  # names already mean the same day in both
    step = int(step_text) if step_text.isdigit() else None
    if step_text and step is None:
        raise ValueError(f"day-of-week step {step_text!r} is not a number")
    if base == "*":
        low, high = 0, 6
    elif re.fullmatch(r"\d+-\d+", base):
        low, high = (int(part) for part in base.split("-"))
    elif base.isdigit():
        low = high = int(base)
        if step:
            high = 6
    else:
        raise ValueError(f"day-of-week {item!r} is not a day, a range or a list")
    if not (0 <= low <= 7 and 0 <= high <= 7) or low > high:
        raise ValueError(f"day-of-week {item!r} is outside 0-7 (0 and 7 are Sunday)")
    if base == "*" and step is None:
        return "*"
    days = [_DAYS[day] for day in range(low, high + 1, step or 1)]
    return ",".join(dict.fromkeys(days))


def _day_of_week(field: str) -> str:
    return ",".join(_day_item(item) for item in field.split(","))


#: crontab's nicknames (crontab(5)), as the 5-field expressions they stand for. ``@reboot``
#: has no time to fire at and is refused like any other unknown expression.
ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}  # fmt: skip


def parse_cron(expression: str, timezone: tzinfo | str | None = None) -> CronTrigger:
    """A trigger for a 5- or 6-field cron expression, or one of crontab's nicknames
    (:data:`ALIASES`: ``@daily``, ``@weekly``, ...).

    Raises ``ValueError`` saying what is wrong (the number of fields, the field APScheduler
    rejects, or an expression that never fires, such as the 30th of February).
    ``timezone`` defaults to the machine's local time zone.
    """
    fields = ALIASES.get(expression.strip().lower(), expression).split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday) or 6 "
                         f"(with leading seconds), or is one of {', '.join(ALIASES)}; not "
                         f"{len(fields)} fields: {expression!r}")
    second, minute, hour, day, month, weekday = fields
    try:
        trigger = CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                              day_of_week=_day_of_week(weekday), timezone=timezone)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from exc
    if trigger.get_next_fire_time(None, dt.datetime.now(dt.UTC)) is None:
        raise ValueError(f"{expression!r} never fires (no date matches its day, month and "
                         "weekday, e.g. the 30th of February): correct the day or the month")
    return trigger
