"""Spoken numbers: tokenising a transcript, reading numbers in digits or words, and
formatting results for speech.

Pure functions, no I/O. Used by :mod:`voicestack.dialogue`.

Understood forms: ``17``, ``2.5``, ``1,000``, ``-4``, ``two``, ``twenty three``,
``twenty-three``, ``one hundred and five``, ``a hundred``, ``three thousand``,
``2 million``, ``two point five``, ``minus four``, ``negative 4``.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS: dict[str, int] = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES: dict[str, int] = {
    "thousand": 1_000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "trillion": 1_000_000_000_000,
}
NEGATIVE_WORDS = frozenset({"minus", "negative", "-"})
# Words speech recognition writes for a lone digit ("what is for plus 4"); read as
# numbers only where an operator makes that unambiguous (see parse_operand).
HOMOPHONES: dict[str, int] = {"for": 4, "to": 2, "too": 2, "won": 1, "ate": 8}

_TOKEN_RE = re.compile(r"\d+(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+|[a-z]+|[-+*/x^=%]")
_DIGIT_RE = re.compile(r"^(?:\d+(?:,\d{3})*(?:\.\d+)?|\d*\.\d+)$")


def tokenize(text: str) -> list[str]:
    """Split a transcript into lower-case word, number and operator-symbol tokens.

    Hyphens between letters join words ("twenty-three" gives two tokens); apostrophes
    are dropped after expanding "what's"; other punctuation is ignored.
    """
    s = text.lower()
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\u00d7", " times ")
    s = s.replace("\u00f7", " divided by ").replace("\u2019", "'")
    s = re.sub(r"\bwhat'?s\b", "what is", s)
    s = s.replace("'", "")
    s = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", s)
    return _TOKEN_RE.findall(s)


def is_digit_token(token: str) -> bool:
    """True for a token written in digits ("17", "2.5", "1,000", ".5")."""
    return bool(_DIGIT_RE.match(token))


def _digit_value(token: str) -> float:
    return float(token.replace(",", ""))


def starts_number(tokens: list[str], i: int) -> bool:
    """True when an unsigned number starts at ``tokens[i]``."""
    if i >= len(tokens):
        return False
    t = tokens[i]
    if is_digit_token(t) or t in UNITS or t in TENS:
        return True
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    return t == "a" and (nxt == "hundred" or nxt in SCALES)


def _parse_decimals(tokens: list[str], i: int) -> tuple[float, int] | None:
    """Digits after "point": "five" -> .5, "two five" -> .25, "25" -> .25."""
    if i < len(tokens) and tokens[i].isdigit():
        return float("0." + tokens[i]), i + 1
    digits = ""
    j = i
    while j < len(tokens) and (tokens[j] in UNITS and UNITS[tokens[j]] < 10 or tokens[j] == "oh"):
        digits += "0" if tokens[j] == "oh" else str(UNITS[tokens[j]])
        j += 1
    if not digits:
        return None
    return float("0." + digits), j


def parse_number(tokens: list[str], i: int) -> tuple[float, int] | None:
    """Read one number starting at ``tokens[i]``.

    Returns ``(value, index after the number)``, or None when no number starts there.
    A leading "minus"/"negative"/"-" is read as the sign.
    """
    n = len(tokens)
    sign = 1.0
    j = i
    if j < n and tokens[j] in NEGATIVE_WORDS and starts_number(tokens, j + 1):
        sign = -1.0
        j += 1
    if not starts_number(tokens, j):
        return None

    total = 0.0
    current = 0.0
    fraction = 0.0
    last = ""  # kind of the previous token: digit, unit, tens, hundred, scale
    while j < n:
        t = tokens[j]
        nxt = tokens[j + 1] if j + 1 < n else ""
        if is_digit_token(t):
            if last not in ("", "hundred", "scale"):
                break
            current += _digit_value(t)
            last = "digit"
        elif t in UNITS:
            if last in ("unit", "digit") or (last == "tens" and UNITS[t] >= 10):
                break
            current += UNITS[t]
            last = "unit"
        elif t in TENS:
            if last in ("unit", "tens", "digit"):
                break
            current += TENS[t]
            last = "tens"
        elif t == "a" and last == "" and (nxt == "hundred" or nxt in SCALES):
            current = 1.0
            last = "unit"
        elif t == "hundred" and last in ("unit", "tens", "digit"):
            current *= 100
            last = "hundred"
        elif t in SCALES and last in ("unit", "tens", "digit", "hundred"):
            total += current * SCALES[t]
            current = 0.0
            last = "scale"
        elif t == "and" and last in ("hundred", "scale") and (nxt in UNITS or nxt in TENS):
            pass  # "one hundred and five"
        elif t == "point" and last in ("unit", "tens", "digit") and fraction == 0.0:
            dec = _parse_decimals(tokens, j + 1)
            if dec is None:
                break
            fraction, j = dec
            break
        else:
            break
        j += 1
    return sign * (total + current + fraction), j


def parse_operand(tokens: list[str], i: int) -> tuple[float, int] | None:
    """Like :func:`parse_number`, but also reads a lone homophone ("for" = 4) as a digit."""
    parsed = parse_number(tokens, i)
    if parsed is not None:
        return parsed
    sign, j = 1.0, i
    if j < len(tokens) and tokens[j] in NEGATIVE_WORDS:
        sign, j = -1.0, j + 1
    if j < len(tokens) and tokens[j] in HOMOPHONES:
        return sign * HOMOPHONES[tokens[j]], j + 1
    return None


def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order (helper for tests and diagnostics)."""
    tokens = tokenize(text)
    out: list[float] = []
    i = 0
    while i < len(tokens):
        parsed = parse_number(tokens, i)
        if parsed is None:
            i += 1
            continue
        value, i = parsed
        out.append(value)
    return out


def format_number(value: float, places: int = 4) -> str:
    """Digits for speech and text, rounded to ``places`` decimals.

    5.0 -> "5", 2.5 -> "2.5", 1/3 -> "0.3333" (or "0.33" with ``places=2``), -4 -> "-4".
    """
    if math.isnan(value):
        return "not a number"
    if math.isinf(value):
        return "infinity" if value > 0 else "minus infinity"
    rounded = round(value, places)
    if rounded == int(rounded) and abs(rounded) < 1e15:
        return str(int(rounded))
    return f"{rounded:.{places}f}".rstrip("0").rstrip(".")


def is_exact(value: float) -> bool:
    """True when :func:`format_number` shows ``value`` without rounding it."""
    if math.isnan(value) or math.isinf(value):
        return True
    return abs(round(value, 4) - value) < 1e-9
