"""Game days: an ordered suite of experiments run unattended, checked first, on a schedule.

``lkchaos gameday check|run|schedule`` (:mod:`lkchaos.gameday.cli`); the file format is in
:mod:`lkchaos.gameday.model` and docs/gamedays.md.
"""

from lkchaos.gameday.check import GamedayInvalid, check_gameday, load_gameday
from lkchaos.gameday.lock import GamedayLock, GamedayRunning
from lkchaos.gameday.model import Baseline, Entry, Gameday
from lkchaos.gameday.runner import EXIT, RunOptions, run_gameday
from lkchaos.yamlcheck import Problem

__all__ = [
    "EXIT", "Baseline", "Entry", "Gameday", "GamedayInvalid", "GamedayLock", "GamedayRunning",
    "Problem", "RunOptions", "check_gameday", "load_gameday", "run_gameday",
]  # fmt: skip
