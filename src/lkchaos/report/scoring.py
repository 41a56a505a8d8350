"""The report's one link to :mod:`lkchaos.score`: a run's score and its RTO bounds.

Scores are shown as of the run's end (no staleness decay): a report describes the run as it
was. Scoring problems (bad score settings in the experiment) never stop a report; they are
shown instead of the score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lkchaos import score
from lkchaos.errors import LkChaosError


def score_of(journal: Mapping[str, Any], entry_outcome: str | None = None
             ) -> tuple[float | None, str]:  # fmt: skip
    """``(score 0-100, explanation)`` of one run as of its end (as the game day entry it was,
    with ``entry_outcome``); ``(None, why)`` when it cannot be scored."""
    try:
        result = score.experiment_score(journal, now=score.journal_end(journal),
                                        entry_outcome=entry_outcome)  # fmt: skip
    except LkChaosError as exc:
        return None, f"not scored: {exc}"
    except (AttributeError, TypeError, ValueError) as exc:  # a journal of an unexpected shape
        return None, f"not scored: the journal has an unexpected shape ({exc})"
    return result.value, result.explanation


def bounds_of(experiment: Mapping[str, Any], probes: Sequence[str]) -> dict[str, float]:
    """The RTO bound (s) of each sampled probe that has one (``lkchaos.score.rto_bounds``)."""
    try:
        bounds = score.rto_bounds(experiment, list(probes))
    except (LkChaosError, AttributeError, TypeError, ValueError):
        return {}
    return {name: bound for name, bound in bounds.items() if bound is not None}
