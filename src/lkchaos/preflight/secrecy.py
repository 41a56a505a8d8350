"""Secrets in experiments: where they may be given, and keeping them out of problem messages.

- The API key and secret belong in ``secrets`` or the environment, never in ``configuration``
  (Chaos Toolkit writes the configuration into the journal): :func:`in_configuration` makes
  every key ``livekit_api_secret`` or ``livekit_api_key``, and every key holding
  ``api_secret`` at any depth, a problem.
- A secret written as a literal string in the experiment's ``secrets`` block works, but
  lives in the file: :func:`inline` warns (level ``warning``, which does not stop a run).
- :func:`known` lists every secret value a message must not show: the experiment's resolved
  secrets, the API secret the settings load, and those :mod:`lkchaos.safety.audit` knows;
  :func:`scrub_problem` and :func:`scrub_text` replace them by ``***``, also in the quoted
  forms (``repr``, JSON) a message may hold them in.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lkchaos.preflight.walk import MASK, Problem
from lkchaos.safety import audit

ENV_SECRET = '{"livekit": {"api_secret": {"type": "env", "key": "LIVEKIT_API_SECRET"}}}'
_CONFIGURATION_KEYS = ("livekit_api_secret", "livekit_api_key")
_WHOLE_PLACEHOLDER = re.compile(r"\$\{[^}]+\}")


def _keys(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}"
            name = str(key).lower()
            if name in _CONFIGURATION_KEYS or "api_secret" in name:
                yield where
            yield from _keys(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _keys(item, f"{path}[{i}]")


def in_configuration(experiment: Mapping[str, Any]) -> list[Problem]:
    """A problem for each key of the configuration that holds the API key or secret."""
    return [Problem("experiment", "", where, MASK, (
        "the LiveKit API key and secret are accepted only from the experiment's secrets or "
        "the environment (LIVEKIT_API_KEY, LIVEKIT_API_SECRET), never from its configuration, "
        f"which goes into the journal: move it to secrets, as {ENV_SECRET}"))
        for where in _keys(experiment.get("configuration"), "configuration")]  # fmt: skip


def inline(experiment: Mapping[str, Any]) -> list[Problem]:
    """A warning for each secret written as a literal string in the ``secrets`` block."""
    raw = experiment.get("secrets")
    found = []
    for scope, values in (raw.items() if isinstance(raw, Mapping) else []):
        for key, value in (values.items() if isinstance(values, Mapping) else []):
            if isinstance(value, str) and value and not _WHOLE_PLACEHOLDER.fullmatch(value):
                found.append(Problem("experiment", "", f"secrets.{scope}.{key}", MASK, (
                    "a secret written in the experiment is in every copy of the file: load it "
                    'from the environment instead, as {"type": "env", "key": "VARIABLE"} '
                    f"(for the API secret: {ENV_SECRET})"), level="warning"))  # fmt: skip
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def known(secrets: Mapping[str, Any] | None, api_secret: str | None) -> list[str]:
    """Every secret value to keep out of messages, with the quoted forms a message may hold
    it in, longest first."""
    values = {s for s in _strings(dict(secrets or {})) if s}
    values |= {api_secret} if api_secret else set()
    values |= audit.known_secrets()
    forms = set(values)
    for value in values:
        forms.add(repr(value)[1:-1])
        forms.add(json.dumps(value)[1:-1])
    return sorted((f for f in forms if f), key=len, reverse=True)


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    result: str = audit.scrub(text, secrets)
    return result


def scrub_problem(problem: Problem, secrets: list[str]) -> Problem:
    """The problem with every secret of ``secrets`` replaced by ``***`` in all its parts."""
    if not secrets:
        return problem
    return dataclasses.replace(
        problem,
        activity=scrub_text(problem.activity, secrets),
        argument=None if problem.argument is None else scrub_text(problem.argument, secrets),
        value=audit.scrub(problem.value, secrets),
        message=scrub_text(problem.message, secrets),
        function=scrub_text(problem.function, secrets),
    )
