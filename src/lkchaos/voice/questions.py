"""What the probe asks and how it checks what it hears.

Any arithmetic question works: ``expected_answers("What is 17 times 3?")`` computes 51, and
a reply is right when the number (as digits or words) is in its transcript.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Questions asked in turn when none is given. Each needs the agent's MCP tools. Their
#: spoken answers are ones the probe's Whisper tiny.en transcribes reliably from espeak-ng:
#: "12 plus 30 is 42" came back as "12 plus 32" in about one call in twenty, and "17 times 3
#: is 51" as "17 times 351" in about one in four, so neither is a default. The agent's
#: Whisper, after Opus and the agent's VAD, heard "What is 9 minus 4?" as "What is i minus
#: 4?" in about one call in eight (the soft "n" of "nine" is lost); "seven" starts with a
#: fricative that survives.
DEFAULT_QUESTIONS: tuple[str, ...] = (
    "What is two plus three?",
    "What is seven minus two?",
)

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_OPS = {
    "plus": "+", "add": "+", "minus": "-", "subtract": "-", "times": "*",
    "multiplied by": "*", "x": "*", "divided by": "/", "over": "/",
}
_QUESTION = re.compile(
    r"(?P<a>-?[\w.\- ]+?)\s+(?P<op>plus|minus|times|multiplied by|divided by|over|x)\s+"
    r"(?P<b>-?[\w.\- ]+?)\s*\??$"
)


class QuestionError(ValueError):
    """The question's answer cannot be worked out; pass ``expected`` explicitly."""


def spoken(n: int) -> str:
    """``51`` -> ``"fifty one"`` (integers below a million)."""
    if n < 0:
        return "minus " + spoken(-n)
    if n < 20:
        return _UNITS[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f" {_UNITS[unit]}" if unit else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_UNITS[hundreds]} hundred" + (f" {spoken(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        return f"{spoken(thousands)} thousand" + (f" {spoken(rest)}" if rest else "")
    return str(n)


def _number(text: str) -> float:
    text = text.strip().lower().replace("-", " ").replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    total, current = 0, 0
    negative = False
    for word in text.split():
        if word in ("minus", "negative"):
            negative = True
        elif word in _WORD_VALUE:
            current += _WORD_VALUE[word]
        elif word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = total + current * 1000, 0
        elif word != "and":
            raise QuestionError(f"{text!r} is not a number")
    value = total + current
    return -value if negative else value


def expected_answers(question: str) -> list[str]:
    """The accepted spellings of the answer to an arithmetic question."""
    body = question.strip().lower()
    body = re.sub(r"^(what is|what's|how much is|calculate)\s+", "", body)
    match = _QUESTION.match(body)
    if not match:
        raise QuestionError(
            f"cannot work out the answer to {question!r}: ask 'What is A plus|minus|times|"
            "divided by B?', or give the expected answer explicitly"
        )
    a, b = _number(match["a"]), _number(match["b"])
    op = _OPS[match["op"]]
    if op == "/" and b == 0:
        raise QuestionError(f"{question!r} divides by zero")
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[op]
    if value == int(value):
        n = int(value)
        return [str(n), spoken(n)]
    return [f"{value:g}"]


def normalise(text: str) -> str:
    """Lower case; punctuation, hyphens and dots that are not decimal points to spaces."""
    text = re.sub(r"[^a-z0-9.]+", " ", text.lower())
    return " ".join(re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text).split())


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str


def check_reply(transcript: str, expected: list[str]) -> Check:
    """Whether one of the expected answers is said in the reply (as a whole word)."""
    heard = f" {normalise(transcript)} "
    for answer in expected:
        if f" {normalise(answer)} " in heard:
            return Check(True, f"heard {answer!r}")
    if not transcript.strip():
        return Check(False, "the reply was inaudible (empty transcript)")
    return Check(False, f"expected one of {expected} in {transcript!r}")
