"""Rule-based dialogue for the voice agent: transcript -> intent -> tool calls -> answer.

Pure Python, no I/O. The agent's rule-based LLM drives it one step at a time:

1. :func:`parse` turns a transcript into an intent (:class:`Arithmetic`, :class:`TimeQuery`,
   :class:`CapitalQuery`, :class:`Greeting` or :class:`Unknown`).
2. :func:`plan` takes the intent and the outputs of the tool calls made so far and returns
   either the next :class:`ToolCall` (for the MCP tools ``add``, ``subtract``, ``multiply``,
   ``divide``, ``current_time``, ``lookup``) or the final :class:`Reply`.
3. :func:`error_reply` phrases a failed tool call (division by zero, unknown topic, or an
   unreachable tool server).

Arithmetic is evaluated with the usual precedence (times/divided by before plus/minus,
left to right), one tool call per operation. Replies state results in digits, e.g.
"2 plus 3 is 5.".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .spoken_numbers import format_number, is_exact, parse_number, parse_operand, tokenize

TOOL_APOLOGY = "Sorry, I can't reach my tools right now."
STT_APOLOGY = "Sorry, I can't reach my speech recognition right now."
HELP = "I can help with arithmetic, the time, or capitals."
UNKNOWN_REPLY = f"Sorry, I didn't get that. {HELP}"
GREETING_REPLY = f"Hello! {HELP}"
TOO_LONG_REPLY = "Sorry, that calculation has too many steps for me."

OPERATIONS = ("add", "subtract", "multiply", "divide")
OP_WORDS = {"add": "plus", "subtract": "minus", "multiply": "times", "divide": "divided by"}
MAX_OPERANDS = 6

# Multi-word operators first: the longest match wins.
_OPERATOR_PHRASES: list[tuple[tuple[str, ...], str]] = [
    (("multiplied", "by"), "multiply"), (("multiply", "by"), "multiply"),
    (("divided", "by"), "divide"), (("divide", "by"), "divide"), (("take", "away"), "subtract"),
    (("plus",), "add"), (("+",), "add"), (("minus",), "subtract"), (("-",), "subtract"),
    (("less",), "subtract"), (("times",), "multiply"), (("x",), "multiply"),
    (("*",), "multiply"), (("over",), "divide"), (("/",), "divide"),
]  # fmt: skip
# "the sum of A and B", "add A and B", ...: verb/noun -> (operation, separators)
_PREFIX_FORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sum": ("add", ("and", "plus")),
    "add": ("add", ("and", "to", "plus")),
    "product": ("multiply", ("and", "times", "by")),
    "multiply": ("multiply", ("by", "and", "times")),
    "difference": ("subtract", ("and", "minus")),
    "quotient": ("divide", ("and", "by")),
    "divide": ("divide", ("by",)),
    "subtract": ("subtract", ("from",)),
}
_TIMEZONES = {
    "utc": "UTC", "gmt": "UTC", "london": "Europe/London", "paris": "Europe/Paris",
    "berlin": "Europe/Berlin", "madrid": "Europe/Madrid", "rome": "Europe/Rome",
    "new york": "America/New_York", "chicago": "America/Chicago",
    "los angeles": "America/Los_Angeles", "san francisco": "America/Los_Angeles",
    "tokyo": "Asia/Tokyo", "sydney": "Australia/Sydney", "delhi": "Asia/Kolkata",
    "new delhi": "Asia/Kolkata", "beijing": "Asia/Shanghai", "singapore": "Asia/Singapore",
}  # fmt: skip


@dataclass(frozen=True)
class Arithmetic:
    """An expression: ``numbers[0] ops[0] numbers[1] ops[1] ...``; ``spoken`` restates it."""

    numbers: tuple[float, ...]
    ops: tuple[str, ...]
    spoken: str


@dataclass(frozen=True)
class TimeQuery:
    """A question for the time, e.g. "What time is it in Tokyo?"; ``timezone`` is IANA."""

    timezone: str = "UTC"
    place: str | None = None


@dataclass(frozen=True)
class CapitalQuery:
    """A question for the capital of ``country`` (lower case)."""

    country: str


@dataclass(frozen=True)
class Greeting:
    """A greeting with no question in it."""


@dataclass(frozen=True)
class Unknown:
    """Anything else."""

    text: str


Intent = Arithmetic | TimeQuery | CapitalQuery | Greeting | Unknown


@dataclass(frozen=True)
class ToolCall:
    """The next MCP tool to call and its arguments."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """The final answer; ``ok`` is False for apologies and refusals."""

    text: str
    ok: bool = True


# -- parsing ---------------------------------------------------------------------------


def _match_operator(tokens: list[str], i: int) -> tuple[str, int] | None:
    for phrase, op in _OPERATOR_PHRASES:
        if tuple(tokens[i : i + len(phrase)]) == phrase:
            return op, i + len(phrase)
    return None


def _spoken(numbers: Sequence[float], ops: Sequence[str]) -> str:
    parts = [format_number(numbers[0])]
    for op, value in zip(ops, numbers[1:], strict=True):
        parts += [OP_WORDS[op], format_number(value)]
    return " ".join(parts)


def _infix_at(tokens: list[str], i: int) -> Arithmetic | None:
    """``A op B [op C ...]`` starting at ``tokens[i]``, optionally followed by squared/cubed."""
    first = parse_operand(tokens, i)
    if first is None:
        return None
    numbers, ops = [first[0]], []
    j = first[1]
    while True:
        op = _match_operator(tokens, j)
        if op is None:
            break
        nxt = parse_operand(tokens, op[1])
        if nxt is None:
            break
        ops.append(op[0])
        numbers.append(nxt[0])
        j = nxt[1]
    power = tokens[j] if j < len(tokens) else ""
    if not ops and power in ("squared", "cubed"):
        count = 2 if power == "squared" else 3
        base = numbers[0]
        return Arithmetic(
            (base,) * count, ("multiply",) * (count - 1), f"{format_number(base)} {power}"
        )
    if not ops:
        return None
    return Arithmetic(tuple(numbers), tuple(ops), _spoken(numbers, ops))


def _prefix_at(tokens: list[str], i: int) -> Arithmetic | None:
    """Verb or noun first: "sum of A and B", "add A to B", "subtract A from B"..."""
    word = tokens[i]
    if word not in _PREFIX_FORMS:
        return None
    op, separators = _PREFIX_FORMS[word]
    j = i + 1
    while j < len(tokens) and tokens[j] in ("of", "between", "the", "together"):
        j += 1
    first = parse_number(tokens, j)
    if first is None or first[1] >= len(tokens) or tokens[first[1]] not in separators:
        return None
    second = parse_number(tokens, first[1] + 1)
    if second is None:
        return None
    a, b = first[0], second[0]
    if word == "subtract":  # "subtract A from B" is B - A
        a, b = b, a
    return Arithmetic((a, b), (op,), _spoken((a, b), (op,)))


def _percent_at(tokens: list[str], i: int) -> Arithmetic | None:
    """Percentages: "A percent of B" is A times B divided by 100."""
    first = parse_number(tokens, i)
    if first is None:
        return None
    j = first[1]
    if tokens[j : j + 2] == ["per", "cent"]:
        j += 2
    elif j < len(tokens) and tokens[j] in ("percent", "%"):
        j += 1
    else:
        return None
    if j >= len(tokens) or tokens[j] != "of":
        return None
    second = parse_number(tokens, j + 1)
    if second is None:
        return None
    a, b = first[0], second[0]
    spoken = f"{format_number(a)} percent of {format_number(b)}"
    return Arithmetic((a, b, 100.0), ("multiply", "divide"), spoken)


def parse_arithmetic(text: str) -> Arithmetic | None:
    """The first arithmetic expression in ``text``, or None."""
    tokens = tokenize(text)
    for i in range(len(tokens)):
        for reader in (_prefix_at, _percent_at, _infix_at):
            found = reader(tokens, i)
            if found is not None:
                return found
    return None


def _clean(text: str) -> str:
    return " ".join(tokenize(text))


def parse(text: str) -> Intent:
    """Turn a transcript into an intent."""
    arithmetic = parse_arithmetic(text)
    if arithmetic is not None:
        return arithmetic
    clean = _clean(text)
    capital = re.search(r"\bcapital (?:city )?of (?:the )?([a-z][a-z ]*)", clean)
    if capital is None:
        capital = re.search(r"\b(?:what is |tell me )?(?:the )?([a-z][a-z ]*?)s capital\b", clean)
    if capital:
        country = re.sub(r"(?: please| city| now| today)+$", "", capital.group(1).strip())
        return CapitalQuery(country)
    if re.search(r"\b(?:what time|the time|time is it|current time|time now)\b", clean):
        place = re.search(r"\btime (?:is it )?in ([a-z][a-z ]*)", clean)
        if place:
            name = place.group(1).strip()
            name = re.sub(r" (?:right )?now$", "", name)
            if name in _TIMEZONES:
                return TimeQuery(_TIMEZONES[name], name)
        return TimeQuery()
    if re.fullmatch(
        r"(?:(?:hi|hello|hey|good (?:morning|afternoon|evening))\b ?)+(?:there)?", clean
    ):
        return Greeting()
    return Unknown(text)


# -- planning and answering -------------------------------------------------------------


def next_operation(numbers: Sequence[float], ops: Sequence[str]) -> int:
    """Index of the operation to do next: the first times/divide, else the first one."""
    for i, op in enumerate(ops):
        if op in ("multiply", "divide"):
            return i
    return 0


def tool_output_number(output: str) -> float:
    """The number in a tool output ("5", "5.0", "-2.5"); raises ValueError otherwise."""
    return float(output.strip())


def _arithmetic_step(intent: Arithmetic, outputs: Sequence[str]) -> ToolCall | Reply:
    if len(intent.numbers) > MAX_OPERANDS:
        return Reply(TOO_LONG_REPLY, ok=False)
    numbers, ops = list(intent.numbers), list(intent.ops)
    for output in outputs:
        if not ops:
            break
        k = next_operation(numbers, ops)
        numbers[k : k + 2] = [tool_output_number(output)]
        del ops[k]
    if ops:
        k = next_operation(numbers, ops)
        return ToolCall(ops[k], {"a": numbers[k], "b": numbers[k + 1]})
    result = numbers[0]
    if is_exact(result):
        return Reply(f"{intent.spoken} is {format_number(result)}.")
    return Reply(f"{intent.spoken} is about {format_number(result, 2)}.")


def format_time(iso: str, intent: TimeQuery) -> str:
    """The spoken time ("It's 14:05 UTC.") from ``current_time``'s ISO-8601 output."""
    moment = datetime.fromisoformat(iso.strip())
    clock = moment.strftime("%H:%M")
    if intent.place and intent.timezone != "UTC":
        return f"It's {clock} in {intent.place.title()}."
    return f"It's {clock} UTC."


def plan(intent: Intent, outputs: Sequence[str] = ()) -> ToolCall | Reply:
    """The next step for ``intent`` given the successful tool outputs so far, in order.

    An output that cannot be read (not a number where one is expected, ...) gives the
    tool apology.
    """
    try:
        if isinstance(intent, Arithmetic):
            return _arithmetic_step(intent, outputs)
        if isinstance(intent, TimeQuery):
            if not outputs:
                return ToolCall("current_time", {"timezone": intent.timezone})
            return Reply(format_time(outputs[0], intent))
        if isinstance(intent, CapitalQuery):
            if not outputs:
                return ToolCall("lookup", {"topic": f"capital of {intent.country}"})
            return Reply(f"The capital of {intent.country.title()} is {outputs[0].strip()}.")
    except ValueError:
        return Reply(TOOL_APOLOGY, ok=False)
    if isinstance(intent, Greeting):
        return Reply(GREETING_REPLY)
    return Reply(UNKNOWN_REPLY, ok=False)


def error_reply(intent: Intent, tool: str, message: str) -> Reply:
    """The answer when a tool call failed with ``message``."""
    lowered = message.lower()
    if tool == "divide" and "zero" in lowered:
        return Reply("Sorry, you can't divide by zero.", ok=False)
    if tool == "lookup" and "unknown topic" in lowered and isinstance(intent, CapitalQuery):
        return Reply(f"Sorry, I don't know the capital of {intent.country.title()}.", ok=False)
    return Reply(TOOL_APOLOGY, ok=False)


def respond(text: str, call_tool: Callable[[ToolCall], str]) -> Reply:
    """Answer ``text`` synchronously, running each tool call through ``call_tool``.

    ``call_tool`` returns the tool's output text or raises an exception whose message is
    the tool error. For tests and offline use; the agent drives :func:`plan` itself.
    """
    intent = parse(text)
    outputs: list[str] = []
    for _ in range(MAX_OPERANDS + 2):
        step = plan(intent, outputs)
        if isinstance(step, Reply):
            return step
        try:
            outputs.append(call_tool(step))
        except Exception as exc:  # noqa: BLE001 - any tool failure becomes a reply
            return error_reply(intent, step.name, str(exc))
    return Reply(TOO_LONG_REPLY, ok=False)


def apply_operation(op: str, a: float, b: float) -> float:
    """Reference arithmetic (used by the MCP server); raises ZeroDivisionError, ValueError."""
    if op == "add":
        return a + b
    if op == "subtract":
        return a - b
    if op == "multiply":
        return a * b
    if op == "divide":
        if b == 0:
            raise ZeroDivisionError("Division by zero is undefined.")
        return a / b
    raise ValueError(f"unknown operation: {op}")
