"""What the probe asks and how it checks what it hears.

Without a question the probe draws one per call (:func:`random_question`): "What is, A OP
B?" with A and B drawn uniformly from ``OPERAND_MIN`` to ``OPERAND_MAX`` and OP one of
``OPERATIONS`` (for ``minus`` the larger operand comes first, so no answer is negative),
spoken in words, with a pause after "is". That makes 308 questions with 64 distinct
answers: an agent stuck on one reply, or replaying an earlier one, fails. The stack's Whisper
hears every number word of the range reliably (see ``bench/mishearing.py`` and the rates in
``probes/README.md``).

Any arithmetic question works: ``expected_answers("What is 17 times 3?")`` computes 51, and
a reply is right when its last number (as digits or words) is that answer, so a reply that
restates the question ("14 minus 7 is 8") is not taken for 7.

:func:`same_question` tells whether a transcript of the question (the agent's own, from its
``lkchaos.turn`` report) asks what was asked: that is how the probe tells a mishearing from a
wrong answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

#: The operands and operations of the default questions. Every number word from two to
#: twelve, as the agent's Whisper hears them after Opus, at under 2 % per word.
OPERAND_MIN = 2
OPERAND_MAX = 12
OPERATIONS: tuple[str, ...] = ("plus", "minus", "times")

#: Examples of the default questions, for documentation and for tests.
DEFAULT_QUESTIONS: tuple[str, ...] = (
    "What is, two plus three?",
    "What is, nine minus four?",
    "What is, seven times eight?",
)

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
          "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
#: How Whisper writes espeak-ng's "forty", "sixty", ...: the tens digit and a "d" (heard in
#: CI: "10 times 4 is 4d." for "forty"). No number word is spelt so: read it as the tens.
_TENS_AS_DIGIT_D = re.compile(r"([2-9])d", re.IGNORECASE)
#: What speech recognition writes for a lone digit; the agent reads them as numbers too.
_HOMOPHONES = {"for": 4, "to": 2, "too": 2, "won": 1, "ate": 8}
_OPS = {
    "plus": "+", "add": "+", "minus": "-", "subtract": "-", "times": "*",
    "multiplied by": "*", "x": "*", "divided by": "/", "over": "/",
}
_OP_WORDS = "plus|minus|times|multiplied by|divided by|over|x"
_QUESTION = re.compile(
    rf"(?P<a>-?[\w.\- ]+?)\s+(?P<op>{_OP_WORDS})\s+(?P<b>-?[\w.\- ]+?)\s*\??$"
)
_SCALE_WORDS = frozenset({"hundred", "thousand", "and", "minus", "negative"})


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


def random_question(rng: random.Random | None = None) -> str:
    """A default question: operands and operation drawn at random (see the module doc)."""
    draw = rng or random.SystemRandom()
    a = draw.randint(OPERAND_MIN, OPERAND_MAX)
    b = draw.randint(OPERAND_MIN, OPERAND_MAX)
    op = draw.choice(OPERATIONS)
    if op == "minus" and b > a:
        a, b = b, a
    return question_text(a, op, b)


def question_text(a: int, op: str, b: int) -> str:
    """``(7, "times", 8)`` -> ``"What is, seven times eight?"``.

    The comma is a pause: run together, "is nine" and "is five" came back as "is i" in up to
    two calls in five; with it and the agent's vocabulary hint, 1 in 924 in the benchmark.
    """
    return f"What is, {spoken(a)} {op} {spoken(b)}?"


def all_default_questions() -> list[str]:
    """Every question :func:`random_question` can ask."""
    out = []
    for op in OPERATIONS:
        for a in range(OPERAND_MIN, OPERAND_MAX + 1):
            for b in range(OPERAND_MIN, OPERAND_MAX + 1):
                if op != "minus" or a >= b:
                    out.append(question_text(a, op, b))
    return out


def _number(text: str, homophones: bool = False) -> float:
    text = text.strip().lower().replace("-", " ").replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    if homophones and text in _HOMOPHONES:
        return _HOMOPHONES[text]
    total, current = 0, 0
    negative = False
    words = text.split()
    if not words:
        raise QuestionError("an operand is missing")
    for word in words:
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


def parse_question(question: str, homophones: bool = False) -> tuple[float, str, float]:
    """``"What is 7 times eight?"`` -> ``(7.0, "*", 8.0)``; raises ``QuestionError``."""
    text = question.replace("\u00d7", " times ").replace("+", " plus ").replace("*", " times ")
    body = normalise(re.sub(r"(?<=\d)\s*[-\u2212]\s*(?=\d)", " minus ", text))
    body = re.sub(r"^(what is|whats|what s|how much is|calculate)\s+", "", body)
    match = _QUESTION.match(body)
    if not match:
        raise QuestionError(
            f"cannot work out the answer to {question!r}: ask 'What is A plus|minus|times|"
            "divided by B?', or give the expected answer explicitly"
        )
    a, b = _number(match["a"], homophones), _number(match["b"], homophones)
    return a, _OPS[match["op"]], b


def expected_answers(question: str) -> list[str]:
    """The accepted spellings of the answer to an arithmetic question."""
    a, op, b = parse_question(question)
    if op == "/" and b == 0:
        raise QuestionError(f"{question!r} divides by zero")
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[op]
    if value == int(value):
        n = int(value)
        return [str(n), spoken(n)]
    return [f"{value:g}"]


def same_question(asked: str, heard: str) -> bool:
    """Whether ``heard`` (a transcript) asks what ``asked`` asked.

    Arithmetic questions compare operands and operation, however written ("What is 9 minus
    4?" is "What is nine minus four?"; "for" is read as 4, as the agent does), of the first
    sentence of ``heard`` that asks one; other questions compare their words, punctuation and
    case aside.
    """
    try:
        wanted = parse_question(asked)
    except QuestionError:
        return normalise(asked) == normalise(heard)
    return heard_question(heard) == wanted


def heard_question(transcript: str) -> tuple[float, str, float] | None:
    """The first arithmetic question in a transcript (Whisper may repeat it: "What is 4 plus
    9? What is 4 plus 9?"), as the agent reads it, or None."""
    for sentence in re.split(r"[?!]|\.(?!\d)", transcript):
        try:
            return parse_question(sentence, homophones=True)
        except QuestionError:
            continue
    return None


def normalise(text: str) -> str:
    """Lower case; punctuation, hyphens and dots that are not decimal points to spaces."""
    text = re.sub(r"[^a-z0-9.]+", " ", text.lower())
    return " ".join(re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text).split())


def numbers_in(text: str) -> list[float]:
    """Every number said in ``text``, in order, in digits or in words ("minus" as a sign)."""
    return [token for token in words_said(text) if isinstance(token, float)]


def words_said(text: str) -> list[str | float]:
    """``text`` as it was said: its words (normalised, :func:`normalise`), each number, in
    digits or in words, as one float ("minus" as its sign). "Seven times eight is fifty-six."
    and "7 times 8 is 56." are both ``[7.0, "times", 8.0, "is", 56.0]``."""
    out: list[str | float] = []
    run: list[str] = []

    def flush() -> None:
        trailing: list[str] = []
        while run and run[-1] in ("and", "minus", "negative"):
            trailing.insert(0, run.pop())
        if run:
            try:
                out.append(float(_number(" ".join(run))))
            except QuestionError:
                out.extend(run)
            run.clear()
        out.extend(trailing)

    for word in normalise(re.sub(r"(?<![\w.])-(?=\d)", " minus ", text)).split():
        tens = _TENS_AS_DIGIT_D.fullmatch(word)
        if tens:  # Whisper's "4d" for espeak's "forty": the tens, not a four
            flush()
            out.append(10.0 * int(tens[1]))
        elif re.fullmatch(r"\d+(\.\d+)?", word):
            sign = -1.0 if run[-1:] in (["minus"], ["negative"]) else 1.0
            if sign < 0:
                run.pop()  # the number's sign, not a word of its own
            flush()
            out.append(sign * float(word))
        elif word in ("minus", "negative"):
            flush()
            run.append(word)
        elif word in _WORD_VALUE or (run and word in _SCALE_WORDS):
            if run and word in _WORD_VALUE and _WORD_VALUE[word] >= 10 and run[-1] in _WORD_VALUE:
                flush()  # "seven twelve" is two numbers
            run.append(word)
        else:
            flush()
            out.append(word)
    flush()
    return out


@dataclass(frozen=True)
class Check:
    ok: bool
    reason: str


def _as_number(answer: str) -> float | None:
    try:
        return _number(answer)
    except QuestionError:
        return None


def check_reply(transcript: str, expected: list[str]) -> Check:
    """Whether the reply gives one of the expected answers.

    A numeric answer must be the last number said ("9 minus 2 is 7"); any other answer
    (words such as "speech recognition") must be said somewhere, as whole words.
    """
    if not transcript.strip():
        return Check(False, "the reply was inaudible (empty transcript)")
    heard = f" {normalise(transcript)} "
    said = numbers_in(transcript)
    for answer in expected:
        value = _as_number(answer)
        if value is not None:
            if said and said[-1] == value:
                return Check(True, f"heard {answer!r}")
        elif f" {normalise(answer)} " in heard:
            return Check(True, f"heard {answer!r}")
    return Check(False, f"expected one of {expected} in {transcript!r}")


#: Words of an agent's apologies and failure notices, as agents say them when a tool, the
#: speech-to-text or the LLM fails ("Sorry, I can't reach my tools right now.", "I'm having
#: trouble reaching my tools", "I'm unable to look that up", "There was an error", "Something
#: went wrong, please try again"). Matched on the normalised transcript (lower case,
#: apostrophes dropped).
_APOLOGY = re.compile(
    r"\b(sorry|apologi[sz]e|apologies|can ?t reach|cannot reach|unavailable|not available"
    r"|having (some |a )?(trouble|difficult(y|ies)|issues?|problems?)"
    r"|(unable|not able) to|can ?t (connect|access|complete|get to|look)"
    r"|cannot (connect|access|complete|get to|look)"
    r"|(an|some|a technical) (error|issue|problem)|something went wrong"
    r"|technical (difficult(y|ies)|issues?|problems?)|try again later|please try again)\b"
)


def is_apology(transcript: str) -> bool:
    """Whether a reply is an apology rather than an answer."""
    return bool(_APOLOGY.search(normalise(transcript.replace("'", ""))))
