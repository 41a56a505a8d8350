"""Which items a run covers: ``--section``, ``--only`` and ``--skip``.

- a section is a section title of the document (``Security Validation``, any case), a group
  title (``SSL/TLS Validation Checklist``) or the group prefix of the ids (``tls``);
- ``only`` and ``skip`` take ids or prefixes of ids at a dot (``tls``,
  ``infra.firewall-rules-configured`` and its children);
- each takes several values, repeated or comma separated.

Anything unknown is refused with :class:`SelectionError` (a ``ConfigError``: exit 2) listing
what is valid, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lkchaos.errors import ConfigError
from lkchaos.validate.manual import group_id
from lkchaos.validate.model import Item, items


class SelectionError(ConfigError):
    """A section, id or prefix that the checklist does not have."""


def split_values(values: Iterable[str] | str | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``; a single string is one value; None -> []."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def sections(every: Sequence[Item] | None = None) -> list[tuple[str, list[str]]]:
    """Each section title with its group prefixes, in the document's order."""
    found: dict[str, list[str]] = {}
    for item in every if every is not None else items():
        groups = found.setdefault(item.section, [])
        if group_id(item.id) not in groups:
            groups.append(group_id(item.id))
    return list(found.items())


def _matches(item: Item, prefix: str) -> bool:
    return item.id == prefix or item.id.startswith(prefix + ".")


def _section_matches(item: Item, name: str) -> bool:
    folded = name.casefold()
    return folded in (item.section.casefold(), item.group.casefold()) or group_id(item.id) == name


def select(section: Iterable[str] | str | None = None, only: Iterable[str] | str | None = None,
           skip: Iterable[str] | str | None = None) -> list[Item]:
    """The items the arguments select, in the document's order (every item by default).

    Raises :class:`SelectionError` for a section, id or prefix the checklist does not have, an
    option given with an empty value, and a selection that leaves no item."""
    every = list(items())
    given = {"section": section, "only": only, "skip": skip}
    empty = [name for name, value in given.items() if _given(value) and not split_values(value)]
    if empty:
        raise SelectionError(
            f"{', '.join('--' + name for name in empty)} given but naming nothing (an empty "
            f"value: an unset shell variable?): give ids, prefixes or sections, or leave the "
            f"option out to select every item")
    wanted_sections, wanted, skipped = split_values(section), split_values(only), split_values(skip)
    unknown_sections = [s for s in wanted_sections
                        if not any(_section_matches(i, s) for i in every)]  # fmt: skip
    if unknown_sections:
        listed = "; ".join(f"{title} ({', '.join(groups)})" for title, groups in sections(every))
        raise SelectionError(
            f"unknown section(s): {', '.join(unknown_sections)}. Sections (with their group "
            f"ids) are: {listed}")
    unknown_ids = [p for p in wanted + skipped if not any(_matches(i, p) for i in every)]
    if unknown_ids:
        groups = ", ".join(dict.fromkeys(group_id(i.id) for i in every))
        raise SelectionError(
            f"unknown item id(s) or prefix(es): {', '.join(unknown_ids)}. Ids start with a group "
            f"id ({groups}); `lkchaos validate --list` prints every id")
    chosen = every
    if wanted_sections:
        chosen = [i for i in chosen if any(_section_matches(i, s) for s in wanted_sections)]
    if wanted:
        chosen = [i for i in chosen if any(_matches(i, p) for p in wanted)]
    if skipped:
        chosen = [i for i in chosen if not any(_matches(i, p) for p in skipped)]
    if not chosen:
        raise SelectionError(
            "the selection leaves no item to check (--skip takes out every item --section and "
            "--only chose): a run would pass having checked nothing; `lkchaos validate --list` "
            "with --section and --only alone prints what those select")
    return chosen


def _given(value: Iterable[str] | str | None) -> bool:
    """Whether an option was given at all (an empty string or ``("",)`` was)."""
    if value is None:
        return False
    return True if isinstance(value, str) else len(tuple(value)) > 0
