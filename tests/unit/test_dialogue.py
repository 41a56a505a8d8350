"""Unit tests for the voice agent's rule-based dialogue (stack/voice/voicestack/dialogue.py)."""

from __future__ import annotations

import pytest
from voicestack import dialogue
from voicestack.dialogue import Arithmetic, CapitalQuery, Reply, TimeQuery, ToolCall
from voicestack.spoken_numbers import format_number, parse_number, parse_numbers, tokenize

FIXED_TIME = "2025-03-01T14:05:09+00:00"
CAPITALS = {"france": "Paris", "japan": "Tokyo", "united kingdom": "London"}


def fake_tool(call: ToolCall) -> str:
    """Stands in for the MCP server, with the same semantics and output format."""
    if call.name in dialogue.OPERATIONS:
        value = dialogue.apply_operation(call.name, call.arguments["a"], call.arguments["b"])
        return repr(value)
    if call.name == "current_time":
        return FIXED_TIME
    if call.name == "lookup":
        topic = call.arguments["topic"].removeprefix("capital of ")
        if topic in CAPITALS:
            return CAPITALS[topic]
        raise LookupError(f"Unknown topic: {call.arguments['topic']}")
    raise AssertionError(f"unexpected tool {call.name}")


def unreachable_tool(call: ToolCall) -> str:
    raise ConnectionError("Tool invocation failed: internal service is unavailable.")


def answer(text: str) -> str:
    return dialogue.respond(text, fake_tool).text


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoken", "value"),
    [
        ("two", 2),
        ("zero", 0),
        ("seventeen", 17),
        ("twenty three", 23),
        ("twenty-three", 23),
        ("ninety", 90),
        ("one hundred and five", 105),
        ("one hundred five", 105),
        ("a hundred", 100),
        ("three thousand", 3000),
        ("three thousand two hundred and one", 3201),
        ("twenty five hundred", 2500),
        ("five hundred thousand", 500_000),
        ("two million", 2_000_000),
        ("2 million", 2_000_000),
        ("2.5", 2.5),
        (".5", 0.5),
        ("1,000", 1000),
        ("1,234,567", 1_234_567),
        ("two point five", 2.5),
        ("three point one four", 3.14),
        ("2 point 25", 2.25),
        ("minus four", -4),
        ("negative 4", -4),
        ("-4", -4),
        ("negative two point five", -2.5),
    ],
)
def test_parse_number(spoken: str, value: float) -> None:
    parsed = parse_number(tokenize(spoken), 0)
    assert parsed is not None
    assert parsed[0] == pytest.approx(value)
    assert parsed[1] == len(tokenize(spoken))


@pytest.mark.parametrize("text", ["hello", "minus", "point five", "and", ""])
def test_parse_number_rejects_non_numbers(text: str) -> None:
    assert parse_number(tokenize(text), 0) is None


def test_adjacent_numbers_stay_separate() -> None:
    assert parse_numbers("two three") == [2, 3]
    assert parse_numbers("nineteen ninety") == [19, 90]
    assert parse_numbers("add one hundred and five and six") == [105, 6]


def test_tokenize_handles_symbols_and_punctuation() -> None:
    assert tokenize("What's 2+3?") == ["what", "is", "2", "+", "3"]
    assert tokenize("3x4") == ["3", "x", "4"]
    assert tokenize("6 \u00d7 7 \u00f7 2") == ["6", "times", "7", "divided", "by", "2"]
    assert tokenize("What is 2 plus 3.") == ["what", "is", "2", "plus", "3"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.0, "5"), (2.5, "2.5"), (-4.0, "-4"), (1 / 3, "0.3333"), (1e6, "1000000"), (0.0, "0")],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_number_special_values() -> None:
    assert format_number(float("inf")) == "infinity"
    assert format_number(float("nan")) == "not a number"
    assert format_number(2 / 3, 2) == "0.67"


# -- arithmetic, end to end ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("What is 2 plus 3?", "2 plus 3 is 5."),
        ("What is two plus three?", "2 plus 3 is 5."),
        ("what's two plus three", "2 plus 3 is 5."),
        ("WHAT IS 2 PLUS 3", "2 plus 3 is 5."),
        ("How much is 12 divided by 4?", "12 divided by 4 is 3."),
        ("Calculate 15 minus 6.", "15 minus 6 is 9."),
        ("What is 17 times 3?", "17 times 3 is 51."),
        ("What is 5 multiplied by 6?", "5 times 6 is 30."),
        ("What is 3 x 4?", "3 times 4 is 12."),
        ("What is 3x4?", "3 times 4 is 12."),
        ("What is 10 over 4?", "10 divided by 4 is 2.5."),
        ("What is 2+3?", "2 plus 3 is 5."),
        ("What is 9 - 11?", "9 minus 11 is -2."),
        ("What is 7 * 6?", "7 times 6 is 42."),
        ("What is 8 / 2?", "8 divided by 2 is 4."),
        ("What is one hundred and five minus twenty three?", "105 minus 23 is 82."),
        ("What is three thousand plus one?", "3000 plus 1 is 3001."),
        ("What is 2.5 times 4?", "2.5 times 4 is 10."),
        ("What is two point five plus two point five?", "2.5 plus 2.5 is 5."),
        ("What is minus four plus ten?", "-4 plus 10 is 6."),
        ("What is negative 4 times 3?", "-4 times 3 is -12."),
        ("What is 5 minus minus 3?", "5 minus -3 is 8."),
        ("What is twenty-three multiplied by four?", "23 times 4 is 92."),
        ("What's 1,000 minus 1?", "1000 minus 1 is 999."),
        ("What is 2 plus 3 times 4?", "2 plus 3 times 4 is 14."),
        ("What is 10 minus 4 minus 3?", "10 minus 4 minus 3 is 3."),
        ("What is 100 divided by 10 divided by 5?", "100 divided by 10 divided by 5 is 2."),
        ("What is 7 squared?", "7 squared is 49."),
        ("What is 3 cubed?", "3 cubed is 27."),
        ("What is the sum of 3 and 4?", "3 plus 4 is 7."),
        ("Add 3 and 4.", "3 plus 4 is 7."),
        ("Add 3 to 4.", "3 plus 4 is 7."),
        ("What is the product of 6 and 7?", "6 times 7 is 42."),
        ("What is the difference between 10 and 3?", "10 minus 3 is 7."),
        ("Subtract 3 from 10.", "10 minus 3 is 7."),
        ("Multiply 6 by 7.", "6 times 7 is 42."),
        ("Divide 10 by 4.", "10 divided by 4 is 2.5."),
        ("What is 20 percent of 50?", "20 percent of 50 is 10."),
        ("What is 10 divided by 3?", "10 divided by 3 is about 3.33."),
        ("What is a hundred divided by eight?", "100 divided by 8 is 12.5."),
        ("What is for plus 4?", "4 plus 4 is 8."),
        ("What is 7 minus too?", "7 minus 2 is 5."),
    ],
)
def test_arithmetic_answers(text: str, reply: str) -> None:
    assert answer(text) == reply


def test_parse_arithmetic_intent() -> None:
    intent = dialogue.parse("What is 2 plus 3?")
    assert intent == Arithmetic((2.0, 3.0), ("add",), "2 plus 3")


def test_plan_emits_one_tool_call_per_operation_with_precedence() -> None:
    intent = dialogue.parse("What is 2 plus 3 times 4?")
    assert dialogue.plan(intent) == ToolCall("multiply", {"a": 3.0, "b": 4.0})
    assert dialogue.plan(intent, ["12.0"]) == ToolCall("add", {"a": 2.0, "b": 12.0})
    assert dialogue.plan(intent, ["12.0", "14.0"]) == Reply("2 plus 3 times 4 is 14.")


def test_result_is_stated_in_digits() -> None:
    for text in ("What is two plus three?", "What is 17 times 3?"):
        reply = answer(text)
        assert any(ch.isdigit() for ch in reply.split(" is ")[-1])


def test_division_by_zero_is_a_tool_error_reply() -> None:
    reply = dialogue.respond("What is 10 divided by zero?", fake_tool)
    assert reply == Reply("Sorry, you can't divide by zero.", ok=False)


def test_too_many_operations() -> None:
    reply = dialogue.respond("What is 1 plus 2 plus 3 plus 4 plus 5 plus 6 plus 7?", fake_tool)
    assert reply.text == dialogue.TOO_LONG_REPLY
    assert not reply.ok


def test_unreadable_tool_output_gives_apology() -> None:
    intent = dialogue.parse("What is 2 plus 3?")
    assert dialogue.plan(intent, ["not a number"]) == Reply(dialogue.TOOL_APOLOGY, ok=False)


# -- time and capitals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["What time is it?", "what's the time", "Do you have the current time?", "Time now?"]
)
def test_time_questions(text: str) -> None:
    assert dialogue.parse(text) == TimeQuery("UTC", None)
    assert answer(text) == "It's 14:05 UTC."


def test_time_in_a_city() -> None:
    assert dialogue.parse("What time is it in Tokyo?") == TimeQuery("Asia/Tokyo", "tokyo")
    assert dialogue.plan(TimeQuery("Asia/Tokyo", "tokyo")) == ToolCall(
        "current_time", {"timezone": "Asia/Tokyo"}
    )
    reply = dialogue.plan(TimeQuery("Asia/Tokyo", "tokyo"), ["2025-03-01T23:05:00+09:00"])
    assert reply == Reply("It's 23:05 in Tokyo.")


def test_time_in_unknown_place_falls_back_to_utc() -> None:
    assert dialogue.parse("What time is it in Atlantis?") == TimeQuery()


@pytest.mark.parametrize(
    ("text", "country"),
    [
        ("What is the capital of France?", "france"),
        ("what's the capital of japan", "japan"),
        ("What is the capital city of the United Kingdom?", "united kingdom"),
        ("What's France's capital?", "france"),
        ("Capital of France, please.", "france"),
    ],
)
def test_capital_questions(text: str, country: str) -> None:
    assert dialogue.parse(text) == CapitalQuery(country)


def test_capital_answers() -> None:
    assert answer("What is the capital of France?") == "The capital of France is Paris."
    assert answer("What's the capital of the United Kingdom?") == (
        "The capital of United Kingdom is London."
    )
    assert answer("What is the capital of Narnia?") == "Sorry, I don't know the capital of Narnia."


def test_lookup_tool_call_arguments() -> None:
    assert dialogue.plan(CapitalQuery("france")) == ToolCall(
        "lookup", {"topic": "capital of france"}
    )


# -- everything else ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "Thank you.", "you", "Tell me a joke.", "I am 25 years old.", "What is it for?",
     "I went to the store for 5 minutes."],
)  # fmt: skip
def test_unknown_input_gets_help_reply(text: str) -> None:
    reply = dialogue.respond(text, fake_tool)
    assert reply == Reply(dialogue.UNKNOWN_REPLY, ok=False)
    assert "arithmetic, the time, or capitals" in reply.text


@pytest.mark.parametrize("text", ["Hello", "hi there", "Good morning!"])
def test_greeting(text: str) -> None:
    assert dialogue.respond(text, fake_tool).text == dialogue.GREETING_REPLY


@pytest.mark.parametrize(
    "text", ["What is 2 plus 3?", "What time is it?", "What is the capital of France?"]
)
def test_unreachable_tools_give_apology(text: str) -> None:
    reply = dialogue.respond(text, unreachable_tool)
    assert reply == Reply(dialogue.TOOL_APOLOGY, ok=False)


def test_apply_operation() -> None:
    assert dialogue.apply_operation("add", 2, 3) == 5
    assert dialogue.apply_operation("subtract", 2, 3) == -1
    assert dialogue.apply_operation("multiply", 2, 3) == 6
    assert dialogue.apply_operation("divide", 3, 2) == 1.5
    with pytest.raises(ZeroDivisionError):
        dialogue.apply_operation("divide", 1, 0)
    with pytest.raises(ValueError):
        dialogue.apply_operation("power", 2, 3)
