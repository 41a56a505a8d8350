"""The voice probe's own logic: questions, answer checks, request parsing, error paths."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.voice import prober, roundtrip
from lkchaos.voice.probes import summarize_round_trips, voice_round_trip, voice_round_trips
from lkchaos.voice.questions import (
    DEFAULT_QUESTIONS,
    QuestionError,
    check_reply,
    expected_answers,
    spoken,
)


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
    ],
)
def test_check_reply_matches_whole_answers(heard: str, ok: bool) -> None:
    assert check_reply(heard, ["5", "five"]).ok is ok


def test_check_reply_explains_an_inaudible_reply() -> None:
    assert "inaudible" in check_reply("  ", ["5"]).reason


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="dispatch must be a positive"):
        roundtrip.Timeouts(dispatch=0)


def test_prober_request_parsing() -> None:
    question, expected, timeouts = prober.parse_request(
        {"question": "What is 1 plus 1?", "expected": ["2"], "timeouts": {"total": 20}}
    )
    assert (question, expected, timeouts.total) == ("What is 1 plus 1?", ["2"], 20.0)
    default_question, _, _ = prober.parse_request({})
    assert default_question in DEFAULT_QUESTIONS


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_prober_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ActivityFailed, match="did not answer.*lkchaos stack status"):
        voice_round_trip(timeout=1, configuration={"voice_prober_url": url})


def test_bad_timeout_is_refused_before_anything_runs() -> None:
    with pytest.raises(ActivityFailed, match="positive number of seconds"):
        voice_round_trip(timeout=0, configuration={"voice_prober_url": "http://127.0.0.1:9"})


def test_prober_refusal_is_passed_on() -> None:
    with _FakeProber([{"error": "unknown timeout(s): nap"}], status=400) as refusing:
        with pytest.raises(ActivityFailed, match="refused its arguments: unknown timeout"):
            voice_round_trip(stage_timeouts={"nap": 3},
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
            "heard": "h", "room": "r", "timings_ms": {}}


def test_one_slow_call_among_fast_ones_keeps_the_median_within_budget() -> None:
    calls = [_call(True, 1.8), _call(True, 3.4), _call(True, 2.0)]
    verdict = summarize_round_trips(calls, 3, 3.0)
    assert verdict["ok"], verdict
    assert (verdict["answered"], verdict["latency_median_s"], verdict["latency_max_s"]) == (
        3, 2.0, 3.4)
    assert set(verdict["results"][0]) == {"ok", "stage", "reason", "latency_s", "question",
                                          "heard"}


def test_a_slow_service_fails_the_median_budget() -> None:
    verdict = summarize_round_trips([_call(True, 3.2), _call(True, 3.5), _call(True, 1.0)], 3, 3.0)
    assert not verdict["ok"]
    assert verdict["latency_median_s"] == 3.2


def test_too_few_answered_calls_fail_and_are_counted_by_stage() -> None:
    calls = [_call(True, 1.5), _call(False, None, "dispatch"), _call(False, 9.0, "wrong_reply")]
    strict = summarize_round_trips(calls, 3, None)
    assert not strict["ok"]
    assert strict["failures"] == {"dispatch": 1, "wrong_reply": 1}
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


class _FakeProber:
    """An HTTP server standing in for the prober: answers each call with the next result."""

    def __init__(self, answers: list[dict[str, Any]], status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        queue = iter(answers)
        requests = self.requests

        class Answer(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                body = json.dumps(next(queue)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Answer)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _FakeProber:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_voice_round_trips_makes_every_call_through_the_prober() -> None:
    with _FakeProber([_call(True, 1.5), _call(True, 2.5), _call(True, 4.0)]) as prober_:
        verdict = voice_round_trips(
            calls=3, max_median_latency_s=3.0, question="What is two plus three?", timeout=20,
            configuration={"voice_prober_url": prober_.url},
        )
    assert len(prober_.requests) == 3
    assert all(b["question"] == "What is two plus three?" and b["timeouts"]["total"] == 20
               for b in prober_.requests)
    assert verdict["ok"] and verdict["latency_median_s"] == 2.5 and verdict["latency_max_s"] == 4.0


def test_one_of_two_stops_at_the_first_answered_call() -> None:
    with _FakeProber([_call(True, 1.5), _call(True, 1.5)]) as prober_:
        verdict = voice_round_trips(calls=2, min_answered=1,
                                    configuration={"voice_prober_url": prober_.url})
    assert verdict["ok"] and verdict["calls"] == 1 and len(prober_.requests) == 1


def test_one_of_two_calls_again_after_a_misheard_question() -> None:
    answers = [_call(False, 2.0, "wrong_reply"), _call(True, 1.7)]
    with _FakeProber(answers) as prober_:
        verdict = voice_round_trips(calls=2, min_answered=1,
                                    configuration={"voice_prober_url": prober_.url})
    assert verdict["ok"] and verdict["calls"] == 2
    assert verdict["failures"] == {"wrong_reply": 1}


def test_calls_stop_once_the_minimum_cannot_be_reached() -> None:
    answers = [_call(False, None, "dispatch"), _call(True, 1.0), _call(True, 1.0)]
    with _FakeProber(answers) as prober_:
        verdict = voice_round_trips(calls=3, configuration={"voice_prober_url": prober_.url})
    assert not verdict["ok"] and len(prober_.requests) == 1
    assert verdict["failures"] == {"dispatch": 1}
