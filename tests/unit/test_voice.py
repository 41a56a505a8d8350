"""The voice probe's own logic: questions, answer checks, request parsing, error paths."""

from __future__ import annotations

import socket
from typing import Any

import jwt
import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.voice import prober, roundtrip
from lkchaos.voice.credential import authorization
from lkchaos.voice.probes import (
    round_trips_decided,
    summarize_round_trips,
    voice_round_trip,
    voice_round_trips,
)
from lkchaos.voice.questions import (
    DEFAULT_QUESTIONS,
    QuestionError,
    all_default_questions,
    check_reply,
    expected_answers,
    numbers_in,
    spoken,
    words_said,
)
from tests.unit.fake_prober import FakeProber
from tests.unit.livekit_dev import free_port

SECRETS = {"livekit": {"api_key": "key", "api_secret": "the-secret"}}


@pytest.mark.parametrize(
    ("question", "answers"),
    [
        ("What is two plus three?", ["5", "five"]),
        ("What is 17 times 3?", ["51", "fifty one"]),
        ("what's 100 minus 250", ["-150", "minus one hundred fifty"]),
        ("How much is twenty three multiplied by four?", ["92", "ninety two"]),
        ("What is 7 divided by 2?", ["3.5"]),
        ("Calculate one thousand and five over five", ["201", "two hundred one"]),
    ],
)
def test_expected_answers_for_any_arithmetic_question(question: str, answers: list[str]) -> None:
    assert expected_answers(question) == answers


def test_every_default_question_has_an_answer() -> None:
    for question in DEFAULT_QUESTIONS:
        assert expected_answers(question)


@pytest.mark.parametrize(
    "question", ["What time is it?", "What is the capital of France?", "What is 3 divided by 0?"]
)
def test_unanswerable_questions_say_to_pass_expected(question: str) -> None:
    with pytest.raises(QuestionError):
        expected_answers(question)


def test_spoken_numbers() -> None:
    assert spoken(0) == "zero"
    assert spoken(51) == "fifty one"
    assert spoken(1005) == "one thousand five"
    assert spoken(-12) == "minus twelve"


@pytest.mark.parametrize(
    ("heard", "ok"),
    [
        ("Two plus three is 5.", True),
        ("two plus three is five", True),
        ("The answer is 15.", False),  # 5 inside 15 is not 5
        ("Sorry, I can't reach my tools right now.", False),
        ("", False),
        ("Seven minus two is 5.", True),
        ("Five plus three is 8.", False),  # 5 restated from the question is not the answer
    ],
)
def test_check_reply_matches_whole_answers(heard: str, ok: bool) -> None:
    assert check_reply(heard, ["5", "five"]).ok is ok


@pytest.mark.parametrize(("heard", "ok"), [
    ("10 times 4 is 4d.", True),  # Whisper's spelling of espeak-ng's "forty", seen in CI
    ("10 times 4 is 4D.", True),
    ("10 times 4 is 4.", False),  # a four is not forty
    ("10 times 4 is 14.", False),
])
def test_the_tens_as_whisper_writes_them(heard: str, ok: bool) -> None:
    assert check_reply(heard, ["40", "forty"]).ok is ok


def test_check_reply_explains_an_inaudible_reply() -> None:
    assert "inaudible" in check_reply("  ", ["5"]).reason


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dispatch must be a positive"):
        roundtrip.Timeouts(dispatch=0)
    with pytest.raises(ValueError, match="reply_pause must be a positive"):
        roundtrip.Timeouts(reply_pause=-1)
    assert roundtrip.Timeouts(reply_pause=0).reply_pause == 0  # a wrong reply not heard on


def test_prober_request_parsing() -> None:
    question, expected, timeouts = prober.parse_request(
        {"question": "What is 1 plus 1?", "expected": ["2"], "timeouts": {"total": 20}}
    )
    assert (question, expected, timeouts.total) == ("What is 1 plus 1?", ["2"], 20.0)
    default_question, _, _ = prober.parse_request({})
    assert default_question in all_default_questions()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"question": 5}, "question must be a string"),
        ({"expected": "5"}, "list of non-empty strings"),
        ({"timeouts": {"nap": 3}}, "unknown timeout(s): nap"),
        ({"timeouts": {"join": -1}}, "join must be a positive"),
    ],
)
def test_prober_rejects_bad_requests(body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prober.parse_request(body)


def test_unreachable_prober_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ActivityFailed, match="did not answer.*lkchaos stack status"):
        voice_round_trip(timeout=1, configuration={"voice_prober_url": url}, secrets=SECRETS)


def test_bad_timeout_is_refused_before_anything_runs() -> None:
    with pytest.raises(ActivityFailed, match="positive number of seconds"):
        voice_round_trip(timeout=0, configuration={"voice_prober_url": "http://127.0.0.1:9"})


def test_prober_refusal_is_passed_on() -> None:
    with FakeProber([{"error": "unknown timeout(s): nap"}], status=400) as refusing:
        with pytest.raises(ActivityFailed, match="refused its arguments: unknown timeout"):
            voice_round_trip(stage_timeouts={"nap": 3}, secrets=SECRETS,
                             configuration={"voice_prober_url": refusing.url})


def test_latency_budget_fails_a_late_right_answer() -> None:
    from lkchaos.voice.probes import apply_latency_budget

    right = {"ok": True, "stage": "ok", "latency_s": 2.4, "reason": "heard '5'"}
    assert apply_latency_budget(right, None) == right
    assert apply_latency_budget(right, 3.0) == right
    late = apply_latency_budget(right, 2.0)
    assert (late["ok"], late["stage"]) == (False, "slow_reply")
    assert "2.40 s, over 2 s" in late["reason"]
    wrong = {"ok": False, "stage": "wrong_reply", "latency_s": 9.0}
    assert apply_latency_budget(wrong, 2.0) == wrong


def _call(ok: bool, latency: float | None, stage: str = "ok") -> dict[str, Any]:
    return {"ok": ok, "stage": stage, "reason": "", "latency_s": latency, "question": "q",
            "expected": ["e"], "heard": "h", "room": "r", "timings_ms": {}}


def test_one_slow_call_among_fast_ones_keeps_the_median_within_budget() -> None:
    calls = [_call(True, 1.8), _call(True, 3.4), _call(True, 2.0)]
    verdict = summarize_round_trips(calls, 3, 3.0)
    assert verdict["ok"], verdict
    assert (verdict["answered"], verdict["latency_median_s"], verdict["latency_max_s"]) == (
        3, 2.0, 3.4)
    # Each call's entry says what was asked, what answer was expected and what was heard.
    assert verdict["results"][0] == {"ok": True, "stage": "ok", "reason": "", "latency_s": 1.8,
                                     "question": "q", "expected": ["e"], "heard": "h",
                                     "misheard": None, "reply_paused_s": None}


def test_a_slow_service_fails_the_median_budget() -> None:
    verdict = summarize_round_trips([_call(True, 3.2), _call(True, 3.5), _call(True, 1.0)], 3, 3.0)
    assert not verdict["ok"]
    assert verdict["latency_median_s"] == 3.2
    # What made it late, in the result: the calls over the budget, slowest first.
    assert verdict["slow_latencies_s"] == [3.5, 3.2]
    assert verdict["reason"] == ("median latency 3.20 s over the 3 s budget (2 of 3 answered "
                                 "calls over it, up to 3.50 s)")


def test_too_few_answered_calls_fail_and_are_counted_by_stage() -> None:
    calls = [_call(True, 1.5), _call(False, None, "dispatch"), _call(False, 9.0, "wrong_reply")]
    strict = summarize_round_trips(calls, 3, None)
    assert not strict["ok"]
    assert strict["failures"] == {"dispatch": 1, "wrong_reply": 1}
    assert strict["reason"] == ("1 of 3 calls answered, fewer than 3 (dispatch 1, "
                                "wrong_reply 1)")
    assert summarize_round_trips(calls, 1, None)["ok"]
    nothing = summarize_round_trips([_call(False, None, "join")], 1, 3.0)
    assert not nothing["ok"] and nothing["latency_median_s"] is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"calls": 0}, "calls must be a whole number from 1 to 20"),
        ({"calls": 2.5}, "calls must be a whole number"),
        ({"calls": 2, "min_answered": 3}, r"min_answered must be .* from 1 to calls \(2\)"),
        ({"max_median_latency_s": -1}, "max_median_latency_s must be positive"),
    ],
)
def test_voice_round_trips_refuses_bad_arguments_before_calling(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ActivityFailed, match=message):
        voice_round_trips(**arguments, configuration={"voice_prober_url": "http://127.0.0.1:9"})


def test_a_prober_older_than_the_agent_name_field_says_to_rebuild_it() -> None:
    with FakeProber([{"error": "unknown field(s): agent_name"}], status=400) as older:
        with pytest.raises(ActivityFailed, match="older than this lkchaos.*lkchaos stack up"):
            voice_round_trip(secrets=SECRETS, configuration={"voice_prober_url": older.url})


def test_voice_round_trips_makes_every_call_through_the_prober() -> None:
    # After 1.5 s and 4.0 s the median hangs on the third call.
    with FakeProber([_call(True, 1.5), _call(True, 4.0), _call(True, 2.5)]) as prober_:
        verdict = voice_round_trips(
            calls=3, max_median_latency_s=3.0, question="What is two plus three?", timeout=20,
            configuration={"voice_prober_url": prober_.url}, secrets=SECRETS,
        )
    assert len(prober_.requests) == 3
    assert set(prober_.authorizations) == {authorization("the-secret")}
    assert all(b["question"] == "What is two plus three?" and b["timeouts"]["total"] == 20
               for b in prober_.requests)
    assert verdict["ok"] and verdict["latency_median_s"] == 2.5 and verdict["latency_max_s"] == 4.0


@pytest.mark.parametrize(
    ("latencies", "made", "ok"),
    [
        ([1.5, 2.5, 9.0], 2, True),  # two within the budget: no third can lift the median over
        ([3.5, 4.0, 1.0], 2, False),  # two over it: no third can bring the median under
        ([1.5, 4.0, 2.5], 3, True),
        ([1.5, 4.0, 3.5], 3, False),
    ],
)
def test_calls_stop_once_the_median_is_decided(
    latencies: list[float], made: int, ok: bool
) -> None:
    with FakeProber([_call(True, latency) for latency in latencies]) as prober_:
        verdict = voice_round_trips(calls=3, min_answered=2, max_median_latency_s=3.0,
                                    configuration={"voice_prober_url": prober_.url},
                                    secrets=SECRETS)  # fmt: skip
    assert (len(prober_.requests), verdict["calls"], verdict["ok"]) == (made, made, ok)


@pytest.mark.parametrize(
    ("results", "decided"),
    [
        ([], False),
        ([_call(False, None, "join"), _call(False, None, "join")], True),  # 2 of 3 unreachable
        ([_call(False, None, "join"), _call(True, 1.0)], False),
        ([_call(True, 1.0), _call(True, 1.0)], True),
        ([_call(True, 9.0)], False),  # two fast calls left would still bring the median under
        ([_call(True, 9.0), _call(True, 8.0)], True),
    ],
)
def test_whether_the_verdict_is_decided(results: list[dict[str, Any]], decided: bool) -> None:
    assert round_trips_decided(results, 3, 2, 3.0) is decided
    # Without a budget, the count alone decides.
    assert round_trips_decided(results, 3, 2, None) is (
        sum(r["ok"] for r in results) >= 2 or sum(not r["ok"] for r in results) > 1
    )


def test_one_of_two_stops_at_the_first_answered_call() -> None:
    with FakeProber([_call(True, 1.5), _call(True, 1.5)]) as prober_:
        verdict = voice_round_trips(calls=2, min_answered=1,
                                    configuration={"voice_prober_url": prober_.url},
                                    secrets=SECRETS)
    assert verdict["ok"] and verdict["calls"] == 1 and len(prober_.requests) == 1


def test_one_of_two_calls_again_after_a_misheard_question() -> None:
    answers = [_call(False, 2.0, "wrong_reply"), _call(True, 1.7)]
    with FakeProber(answers) as prober_:
        verdict = voice_round_trips(calls=2, min_answered=1,
                                    configuration={"voice_prober_url": prober_.url},
                                    secrets=SECRETS)
    assert verdict["ok"] and verdict["calls"] == 2
    assert verdict["failures"] == {"wrong_reply": 1}


def test_calls_stop_once_the_minimum_cannot_be_reached() -> None:
    answers = [_call(False, None, "dispatch"), _call(True, 1.0), _call(True, 1.0)]
    with FakeProber(answers) as prober_:
        verdict = voice_round_trips(calls=3, configuration={"voice_prober_url": prober_.url},
                                    secrets=SECRETS)
    assert not verdict["ok"] and len(prober_.requests) == 1
    assert verdict["failures"] == {"dispatch": 1}


# -- default questions vary ---------------------------------------------------------------------
def test_default_questions_vary_over_operands_and_operations() -> None:
    import random

    from lkchaos.voice.questions import (
        OPERAND_MAX,
        OPERAND_MIN,
        OPERATIONS,
        parse_question,
        random_question,
    )

    rng = random.Random(7)
    asked = [random_question(rng) for _ in range(300)]
    parsed = [parse_question(q) for q in asked]
    assert {op for _, op, _ in parsed} == {"+", "-", "*"} and len(OPERATIONS) == 3
    operands = {a for a, _, _ in parsed} | {b for _, _, b in parsed}
    assert operands == set(range(OPERAND_MIN, OPERAND_MAX + 1))
    assert len({tuple(expected_answers(q)) for q in asked}) > 30
    assert all(int(expected_answers(q)[0]) >= 0 for q in asked)  # minus never goes negative
    assert set(asked) <= set(all_default_questions())
    assert len(all_default_questions()) == 308
    assert all(q in all_default_questions() for q in DEFAULT_QUESTIONS)


def test_an_agent_stuck_on_one_reply_fails_most_default_questions() -> None:
    import random

    from lkchaos.voice.questions import random_question

    rng = random.Random(3)
    right = sum(check_reply("2 plus 3 is 5.", expected_answers(random_question(rng))).ok
                for _ in range(200))  # fmt: skip
    assert right < 10


@pytest.mark.parametrize(
    ("asked", "heard", "same"),
    [
        ("What is nine minus four?", "What is 9 minus 4?", True),
        ("What is nine minus four?", "what is nine minus four", True),
        ("What is nine minus four?", "What is i minus 4?", False),
        ("What is nine minus four?", "What is 9 plus 4?", False),
        ("What is four plus two?", "What is for plus 2?", True),
        ("What is seven times eight?", "What is 7 x 8?", True),
        ("What is seven times eight?", "What is 7 × 8?", True),
        ("What is seven times eight?", "What is 7*8?", True),
        ("What is twelve minus three?", "What is 12-3?", True),
        ("What is twelve minus three?", "", False),
        ("What is four plus nine?", "What is 4 plus 9? What is 4 plus 9?", True),
        ("What is nine plus nine?", "What is 8 plus 9? What is 9 plus 9?", False),
        ("What is nine times twelve?", "What is it? I times 12.", False),
        ("What is, nine plus two?", "What is, 9 plus 2?", True),
        ("What time is it?", "What time is it", True),
        ("What time is it?", "What dime is it?", False),
    ],
)
def test_same_question_compares_what_is_asked(asked: str, heard: str, same: bool) -> None:
    from lkchaos.voice.questions import same_question

    assert same_question(asked, heard) is same


def _judge(ok: bool, reply: str, agent: dict[str, Any]) -> tuple[str, bool | None]:
    stage, _, misheard = roundtrip.judge("What is nine minus four?", ok, "r", reply, agent)
    return stage, misheard


def test_the_verdict_tells_mishearing_apology_and_wrong_answer_apart() -> None:
    heard_right = {"heard": "What is 9 minus 4?", "outcome": "answered"}
    assert _judge(True, "9 minus 4 is 5.", heard_right) == ("ok", False)
    assert _judge(False, "9 minus 4 is 6.", heard_right) == ("wrong_reply", False)
    misheard = {"heard": "What is i minus 4?", "outcome": "declined"}
    assert _judge(False, "Sorry, I didn't get that.", misheard) == ("misheard", True)
    assert _judge(False, "1 minus 4 is -3.", {"heard": "What is 1 minus 4?"}) == (
        "misheard", True)  # fmt: skip
    tools_down = {"heard": "What is 9 minus 4?", "outcome": "tools_unavailable"}
    assert _judge(False, "Sorry, I can't reach my tools right now.", tools_down) == (
        "apology", False)  # fmt: skip
    stt_down = {"heard": "", "outcome": "stt_unavailable"}
    assert _judge(False, "Sorry, I can't reach my speech recognition.", stt_down) == (
        "apology", None)  # fmt: skip
    assert _judge(False, "Sorry, something.", {}) == ("apology", None)
    assert _judge(False, "It is 6.", {}) == ("wrong_reply", None)
    # A right answer is right whatever the agent says it heard.
    assert _judge(True, "9 minus 4 is 5.", misheard) == ("ok", True)


def test_a_second_agent_answering_the_caller_fails_a_right_reply() -> None:
    one = ["agent-AJ_1"]
    assert roundtrip.extra_agents(True, "ok", "", one) == (True, "ok", "")
    assert roundtrip.extra_agents(True, "ok", "", []) == (True, "ok", "")
    ok, stage, reason = roundtrip.extra_agents(True, "ok", "", ["agent-AJ_1", "agent-AJ_2"])
    assert (ok, stage) == (False, "extra_agent")
    assert "2 agents spoke in the caller" in reason and "agent-AJ_1, agent-AJ_2" in reason
    # another failure keeps its stage and says it too
    ok, stage, reason = roundtrip.extra_agents(False, "wrong_reply", "expected 5",
                                               ["agent-AJ_1", "agent-AJ_2"])  # fmt: skip
    assert (ok, stage) == (False, "wrong_reply")
    assert reason.startswith("expected 5; 2 agents spoke in the caller")


def test_only_agents_seen_speaking_during_the_turn_count() -> None:
    import asyncio
    from types import SimpleNamespace

    from livekit import rtc

    agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    speaking = {roundtrip.AGENT_STATE: "speaking"}

    async def go() -> tuple[list[str], set[str]]:
        room = rtc.Room()  # the SDK's room wants a running event loop
        room.emit("participant_attributes_changed", speaking,
                  SimpleNamespace(kind=agent, identity="before"))  # before the turn
        watch = roundtrip.SpeakingAgents(room)
        room.emit("participant_attributes_changed", speaking,
                  SimpleNamespace(kind=agent, identity="agent-AJ_1"))
        # an agent left by a cut link only ever changes to other states; a caller is no agent
        room.emit("participant_attributes_changed", {roundtrip.AGENT_STATE: "listening"},
                  SimpleNamespace(kind=agent, identity="agent-ghost"))
        room.emit("participant_attributes_changed", speaking,
                  SimpleNamespace(kind=rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
                                  identity="caller-2"))
        room.emit("participant_attributes_changed", speaking,
                  SimpleNamespace(kind=agent, identity="agent-AJ_2"))
        seen = watch.close()
        room.emit("participant_attributes_changed", speaking,
                  SimpleNamespace(kind=agent, identity="after"))
        return seen, watch.seen

    seen, after = asyncio.run(go())
    assert seen == ["agent-AJ_1", "agent-AJ_2"] and after == {"agent-AJ_1", "agent-AJ_2"}


def test_a_right_reply_the_caller_misheard_is_told_from_a_wrong_one() -> None:
    """The agent reports the right answer and the caller heard the same sentence with the
    answer changed: the caller's mishearing (set apart when alone), not a wrong reply."""
    said = {"heard": "What is 10 times 6?", "reply": "10 times 6 is 60."}
    stage, reason, _ = roundtrip.judge("What is ten times six?", False, "r",
                                       "10 times 6 is 16.", said)  # fmt: skip
    assert stage == "reply_misheard" and "'10 times 6 is 16.'" in reason
    # another sentence altogether, or a wrong claim, stays a wrong reply
    assert roundtrip.judge("What is ten times six?", False, "r", "The answer is five.",
                           said)[0] == "wrong_reply"  # fmt: skip
    wrong = {**said, "reply": "10 times 6 is 16."}
    assert roundtrip.judge("What is ten times six?", False, "r", "10 times 6 is 16.",
                           wrong)[0] == "wrong_reply"  # fmt: skip
    assert roundtrip.judge("What is ten times six?", False, "r", "", said)[0] == "wrong_reply"


def test_a_number_heard_in_words_is_the_same_word_as_in_digits() -> None:
    """The agent reports its reply in digits; the caller may hear it in words. Heard twice
    with the answer wrong, that is the caller's mishearing of the same sentence."""
    said = {"heard": "What is 7 times 8?", "reply": "7 times 8 is 56."}
    stage, _reason, _ = roundtrip.judge("What is seven times eight?", False, "r",
                                        "Seven times eight is fifty-eight.", said)
    assert stage == "reply_misheard"
    assert roundtrip.judge("What is seven times eight?", False, "r",
                           "Sorry, I cannot reach my tools.", said)[0] == "apology"
    assert roundtrip.judge("What is seven times eight?", False, "r",
                           "The weather is fine today.", said)[0] == "wrong_reply"


@pytest.mark.parametrize(("text", "words"), [
    ("Seven times eight is fifty-six.", [7.0, "times", 8.0, "is", 56.0]),
    ("7 times 8 is 56.", [7.0, "times", 8.0, "is", 56.0]),
    ("What is -4 plus twelve?", ["what", "is", -4.0, "plus", 12.0]),
    ("It is 4d.", ["it", "is", 40.0]),  # Whisper's "4d" for "forty"
    ("one hundred and five, and then", [105.0, "and", "then"]),
    ("ten minus", [10.0, "minus"]),
])
def test_words_said_make_each_number_one_word(text: str, words: list[object]) -> None:
    assert words_said(text) == words
    assert numbers_in(text) == [w for w in words if isinstance(w, float)]


def test_the_result_carries_the_agents_transcript_and_the_mishearing() -> None:
    out = roundtrip.Outcome(question="q", expected=["5"], room="r", stage="misheard",
                            misheard=True, agent={"heard": "What is i minus 4?"})  # fmt: skip
    result = out.as_dict()
    assert result["agent_heard"] == "What is i minus 4?" and result["misheard"] is True
    assert {"ok", "stage", "reason", "latency_s", "question", "expected", "heard",
            "timings_ms", "agent", "room"} <= set(result)  # fmt: skip


def test_misheard_calls_are_counted_apart() -> None:
    verdict = summarize_round_trips(
        [_call(False, 2.0, "misheard"), _call(True, 1.0), _call(False, None, "no_reply")], 1, None
    )
    assert verdict["misheard"] == 1
    assert verdict["failures"] == {"misheard": 1, "no_reply": 1}


# -- the prober's credential and arguments --------------------------------------------------
def test_the_credential_is_derived_from_the_secret() -> None:
    from lkchaos.voice.credential import is_authorized, prober_token

    token = prober_token("the-secret")
    assert "the-secret" not in token and len(token) == 64
    assert token != prober_token("another-secret")
    assert is_authorized(f"Bearer {token}", "the-secret")
    assert is_authorized(f"bearer {token}", "the-secret")
    for header in (None, "", token, f"Basic {token}", f"Bearer {prober_token('x')}",
                   "Bearer the-secret"):  # fmt: skip
        assert not is_authorized(header, "the-secret")
    assert not is_authorized(f"Bearer {token}", "")
    with pytest.raises(ValueError, match="needs the LiveKit API secret"):
        prober_token("")


def _prober_call(
    method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One request to the prober's application, on a loopback port, with no LiveKit behind."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    config = {"url": "wss://lk.invalid", "key": "key", "secret": "the-secret", "agent": "a"}

    async def go() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(prober.make_app(config), host="127.0.0.1")) as client:
            response = await client.request(method, path, headers=headers, json=body)
            return response.status, await response.json()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "headers",
    [None, {"Authorization": "Bearer nope"}, {"Authorization": "the-secret"},
     {"Authorization": f"Bearer {'0' * 64}"}],
)  # fmt: skip
def test_the_prober_refuses_requests_without_the_credential(
    headers: dict[str, str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def must_not_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("a round trip ran for an unauthenticated request")

    monkeypatch.setattr(roundtrip, "run", must_not_run)
    status, body = _prober_call("POST", "/round-trip", headers, {"question": "What is 1 plus 1?"})
    assert status == 401 and "Authorization: Bearer" in body["error"]


def test_the_prober_serves_a_request_with_the_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    async def fake_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(args)
        assert callable(kwargs["leave_later"])  # a failed join's room is left in the background
        return {"ok": True, "stage": "ok", "question": args[3], "timings_ms": {}}

    monkeypatch.setattr(roundtrip, "run", fake_run)
    good = {"Authorization": authorization("the-secret")}
    status, body = _prober_call("POST", "/round-trip", good, {"question": "What is 1 plus 1?"})
    assert status == 200 and body["ok"] and calls[0][3] == "What is 1 plus 1?"
    status, body = _prober_call("POST", "/round-trip", good, {"question": "-x 1 plus 1\n"})
    assert status == 400 and "printable" in body["error"]
    assert _prober_call("GET", "/health")[0] == 200  # the healthcheck needs no credential


def test_the_prober_dispatches_the_agent_the_request_names(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # A target's voice.agent_name reached no remote prober: it dispatched its own AGENT_NAME
    # and a wrong name passed. The request's name wins; the answer says what was dialed.
    agents: list[str] = []

    async def fake_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
        agents.append(args[5])
        return {"ok": True, "stage": "ok", "question": args[3], "timings_ms": {}}

    monkeypatch.setattr(roundtrip, "run", fake_run)
    good = {"Authorization": authorization("the-secret")}
    ask = {"question": "What is 1 plus 1?"}
    status, body = _prober_call("POST", "/round-trip", good, {**ask, "agent_name": "my-agent"})
    assert status == 200 and body["agent_name"] == "my-agent"
    assert body["livekit_url"] == "wss://lk.invalid"
    assert _prober_call("POST", "/round-trip", good, {**ask, "agent_name": ""})[0] == 200
    assert _prober_call("POST", "/round-trip", good, ask)[1]["agent_name"] == "a"
    assert agents == ["my-agent", "", "a"]
    status, body = _prober_call("POST", "/round-trip", good, {**ask, "agent_name": 3})
    assert status == 400 and "agent_name must be a printable string" in body["error"]


def test_the_round_trip_probe_sends_the_targets_agent_name() -> None:
    with FakeProber([_call(True, 1.0), _call(True, 1.0)]) as prober_:
        voice_round_trip(question="What is two plus three?", timeout=20, secrets=SECRETS,
                         configuration={"voice_prober_url": prober_.url,
                                        "agent_name": "my-agent"})  # fmt: skip
        voice_round_trip(question="What is two plus three?", timeout=20, secrets=SECRETS,
                         configuration={"voice_prober_url": prober_.url})  # fmt: skip
    assert [b["agent_name"] for b in prober_.requests] == ["my-agent", "lkchaos-agent"]


def test_the_prober_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(prober.web, "run_app", lambda app, **kw: seen.update(kw))
    monkeypatch.setattr(prober.audio, "whisper_model", lambda: None)
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.setenv(name, "x")
    prober.main([])
    assert seen["host"] == "127.0.0.1"


def test_a_wrong_credential_says_what_to_do() -> None:
    with FakeProber([{"error": "no"}], status=401) as refusing:
        with pytest.raises(ActivityFailed, match="refused the credential.*API secret"):
            voice_round_trip(secrets=SECRETS, configuration={"voice_prober_url": refusing.url})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"question": "What is 1 plus 1?\n--help"}, "printable"),
        ({"question": "x" * 301}, "over 300 characters"),
        ({"expected": ["5"] * 11}, "at most 10 answers"),
        ({"expected": ["5" * 101]}, "at most 10 answers of at most 100 characters"),
        ({"question": "q", "voice": "--help"}, "unknown field"),
    ],
)
def test_prober_arguments_are_bounded(body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prober.parse_request(body)


# -- nothing reaches a subprocess as an option ----------------------------------------------
def test_the_question_reaches_espeak_on_stdin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import subprocess
    import wave

    from lkchaos.voice import audio

    seen: list[tuple[list[str], bytes]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        seen.append((command, kwargs["input"]))
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes(b"\0\0" * 2205)
        return subprocess.CompletedProcess(command, 0, buffer.getvalue(), b"")

    monkeypatch.setattr(audio.subprocess, "run", fake_run)
    audio.speech.cache_clear()
    text = "--voices -w /tmp/owned.wav What is 1 plus 1?"
    samples = audio.speech(text)
    audio.speech.cache_clear()
    command, stdin = seen[0]
    assert stdin == text.encode()
    assert all(text not in part and "owned" not in part for part in command)
    assert command[:2] == ["espeak-ng", "--stdout"] and command[command.index("-v") + 1] == "en-us"
    assert len(samples) >= int(audio.PAD_S * audio.RATE)


@pytest.mark.parametrize("voice", ["--help", "-w", "en-us -w x", "en us", "", "../x"])
def test_espeak_voices_are_validated(voice: str) -> None:
    from lkchaos.voice import audio

    with pytest.raises(ValueError, match="not an espeak-ng voice name"):
        audio.espeak_command(voice)
    assert audio.espeak_command("en-us+f3")[3] == "en-us+f3"


class Ears:
    """Transcripts of the same audio: prompted first, then unprompted."""

    def __init__(self, prompted: str, unprompted: str) -> None:
        self.heard = {"prompted": prompted, "unprompted": unprompted}
        self.calls: list[str] = []

    def __call__(self, pcm: object, prompt: object = "default") -> str:
        which = "unprompted" if prompt is None else "prompted"
        self.calls.append(which)
        return self.heard[which]


def test_a_right_reply_is_heard_once() -> None:
    ears = Ears("7 times 8 is 56.", "unused")
    heard, check, second = roundtrip.listen(b"", ["56"], "7 times 8 is 56.", ears)
    assert check.ok and heard == "7 times 8 is 56." and second is None
    assert ears.calls == ["prompted"]


def test_a_misheard_right_reply_is_listened_to_again_and_passes() -> None:
    ears = Ears("7 times 8 is 58.", "7 times 8 is 56.")
    heard, check, second = roundtrip.listen(b"", ["56"], "7 times 8 is 56.", ears)
    assert check.ok and heard == second == "7 times 8 is 56."
    assert ears.calls == ["prompted", "unprompted"]


def test_a_wrong_reply_stays_wrong_whatever_the_agent_claims() -> None:
    ears = Ears("The answer is five.", "The answer is five.")
    heard, check, second = roundtrip.listen(b"", ["56"], "7 times 8 is 56.", ears)
    assert not check.ok and heard == "The answer is five." and second == "The answer is five."


def test_a_transcript_already_made_is_not_made_again() -> None:
    """The round trip transcribes the reply while it reads the media path and the agent's
    report; listen() then judges that transcript and listens again only when needed."""
    ears = Ears("unused", "7 times 8 is 56.")
    heard, check, second = roundtrip.listen(b"", ["56"], "7 times 8 is 56.", ears,
                                            heard="7 times 8 is 58.")
    assert check.ok and heard == second == "7 times 8 is 56."
    assert ears.calls == ["unprompted"]
    ears = Ears("unused", "unused")
    heard, check, second = roundtrip.listen(b"", ["56"], "", ears, heard="It is 56.")
    assert check.ok and heard == "It is 56." and ears.calls == []


def _room_config(token: str) -> dict[str, object]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return dict(claims["roomConfig"])


def test_a_round_trips_room_closes_soon_after_it_is_left() -> None:
    token = roundtrip.caller_token("key", "secret" * 6, "room", "caller", "agent",
                                   departure_timeout_s=roundtrip.ROUND_TRIP_DEPARTURE_S)
    config = _room_config(token)
    assert config["departureTimeout"] == roundtrip.ROUND_TRIP_DEPARTURE_S == 5
    assert config["agents"] == [{"agentName": "agent"}]
    # A held call's room keeps the server's default: a caller may rejoin it.
    assert "departureTimeout" not in _room_config(
        roundtrip.caller_token("key", "secret" * 6, "room", "caller", "agent"))


def test_no_agent_name_leaves_the_room_to_livekits_automatic_dispatch() -> None:
    # A dispatch by name in the token turns automatic dispatch off for the room it creates:
    # an agent worker registered without an agent name (livekit-agents' default) never came.
    config = _room_config(roundtrip.caller_token("key", "secret" * 6, "room", "caller", ""))
    assert config.get("agents", []) == []
    assert "of the dispatch of 'my-agent'" == roundtrip.dispatched("my-agent")
    assert "automatic dispatch" in roundtrip.dispatched("")
    assert "voice.agent_name" in roundtrip.dispatched("")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_a_departure_timeout_must_be_whole_seconds(bad: object) -> None:
    with pytest.raises(ValueError, match="departure_timeout_s"):
        roundtrip.caller_token("key", "secret" * 6, "room", "caller", "agent",
                               departure_timeout_s=bad)  # type: ignore[arg-type]


def test_no_second_listening_without_a_right_claim() -> None:
    ears = Ears("The answer is five.", "unused")
    heard, check, second = roundtrip.listen(b"", ["56"], "The answer is five.", ears)
    assert not check.ok and second is None and ears.calls == ["prompted"]


def test_without_a_report_a_reply_heard_wrong_is_listened_to_again() -> None:
    """No turn report came (the agent's attributes were late or lost): nothing but the audio
    says what the agent said, so a reply heard without its answer is heard once more before
    it is called wrong, and only the second hearing can pass it."""
    ears = Ears("7 times 8 is 16.", "7 times 8 is 56.")
    heard, check, second = roundtrip.listen(b"", ["56"], "", ears)
    assert check.ok and heard == second == "7 times 8 is 56."
    assert ears.calls == ["prompted", "unprompted"]
    ears = Ears("7 times 8 is 16.", "7 times 8 is 16.")
    heard, check, second = roundtrip.listen(b"", ["56"], "", ears)
    assert not check.ok and heard == "7 times 8 is 16." and second == "7 times 8 is 16."
    stage, _reason, _misheard = roundtrip.judge("What is 7 times 8?", check.ok, check.reason,
                                                heard, {})
    assert stage == "wrong_reply"


def test_an_apology_without_a_report_is_not_listened_to_again() -> None:
    ears = Ears("Sorry, I can't reach my tools right now.", "unused")
    heard, check, second = roundtrip.listen(b"", ["56"], "", ears)
    assert not check.ok and second is None and ears.calls == ["prompted"]
    assert roundtrip.judge("What is 7 times 8?", False, check.reason, heard, {})[0] == "apology"


def test_the_prober_answers_a_failed_join_within_its_bound_and_leaves_later() -> None:
    """A LiveKit URL whose port takes connections and never answers: the SDK retries the
    join (never cancelled); the prober answers ``join`` while it still does, and the room
    is left once the retries end, before the prober stops."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel; nobody reads them
    secret = "a-secret-long-enough-for-hmac-sha256"
    config = {"url": f"ws://127.0.0.1:{silent.getsockname()[1]}", "key": "key",
              "secret": secret, "agent": "a"}  # fmt: skip
    body = {"question": "What is 1 plus 1?", "timeouts": {"join": 1.0, "total": 30}}

    async def go() -> tuple[int, dict[str, Any], int]:
        async with TestClient(TestServer(prober.make_app(config), host="127.0.0.1")) as client:
            response = await client.post("/round-trip", json=body,
                                         headers={"Authorization": authorization(secret)})
            return response.status, await response.json(), len(prober._leaving)

    try:
        status, result, leaving = asyncio.run(go())
    finally:
        silent.close()
    assert status == 200 and result["stage"] == "join", result
    assert "within 1 s" in result["reason"], result
    assert leaving == 1  # the join was still being retried when the result was sent
    assert not prober._leaving  # and the room was left before the prober stopped


@pytest.mark.parametrize(("duration_s", "budget"), [(0.0, 16), (3.2, 42), (30.0, 224)])
def test_the_probes_transcription_decodes_a_bounded_number_of_tokens(
    duration_s: float, budget: int
) -> None:
    from lkchaos.voice import audio

    assert audio.token_budget(duration_s) == budget


def test_a_spoken_reply_is_transcribed_whole_within_its_token_budget() -> None:
    # The bound stops a repetition loop; it must never cut a real reply short. The real
    # model, on the longest kind of reply the agent gives, in another voice.
    from lkchaos.voice import audio

    reply = "Sorry, I can't reach my tools right now. 17 times 3 is 51."
    heard = audio.transcribe(audio.speech(reply, voice="en-us+m3"))
    assert heard.lower().rstrip(" .").endswith("is 51"), heard


@pytest.mark.parametrize(("seconds", "frames"), [(0.0, 1000), (3.0, 1000), (12.0, 3000)])
def test_the_encoder_reads_a_reply_that_fits_in_the_short_window_there(
    monkeypatch: pytest.MonkeyPatch, seconds: float, frames: int
) -> None:
    # Whisper's encoder costs what its window holds: a reply of a few seconds is read in
    # audio.WINDOW_S (10 s), longer audio (a load run's batch) in Whisper's own 30 s.
    import numpy as np

    from lkchaos.voice import audio
    from tests.unit.whisper_windows import record_windows

    reply = audio.speech("7 times 8 is 56.")
    clip = np.concatenate([reply, np.zeros(int(seconds * audio.RATE), dtype=np.int16)])[
        : max(len(reply), int(seconds * audio.RATE))]  # fmt: skip
    seen = record_windows(monkeypatch)
    heard = audio.transcribe(clip)
    assert seen and set(seen) == {frames}, seen
    assert "56" in heard, heard
    assert not hasattr(audio._window, "frames")  # nothing left for the thread's next one


def test_a_window_set_past_whispers_own_reads_whispers_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The encoder has positions for 30 s and no more (bench/mishearing.py --window 45).
    from lkchaos.voice import audio
    from tests.unit.whisper_windows import record_windows

    monkeypatch.setattr(audio, "WINDOW_S", 45.0)
    seen = record_windows(monkeypatch)
    heard = audio.transcribe(audio.speech("7 times 8 is 56."))
    assert seen and set(seen) == {3000}, seen
    assert "56" in heard, heard


@pytest.mark.parametrize("said", [
    "Sorry, I can't reach my tools right now.",
    "I'm having trouble reaching my tools at the moment.",
    "I am unable to look that up right now.",
    "There was an error getting that for you.",
    "Something went wrong, please try again.",
    "I'm experiencing technical difficulties.",
])
def test_failure_notices_agents_say_are_apologies(said: str) -> None:
    # An agent without lkchaos's turn report is judged by what it said alone: its notice
    # that a tool or its speech-to-text failed is an apology, not a wrong answer.
    from lkchaos.voice.questions import is_apology

    assert is_apology(said)
    stage, _, _ = roundtrip.judge("What is seven plus five?", False, "no 12", said, {})
    assert stage == "apology"


@pytest.mark.parametrize("said", ["Seven plus five is twelve.", "It is 3 PM in Tokyo.",
                                  "The capital of Japan is Tokyo.", "Twelve."])
def test_answers_are_not_apologies(said: str) -> None:
    from lkchaos.voice.questions import is_apology

    assert not is_apology(said)
