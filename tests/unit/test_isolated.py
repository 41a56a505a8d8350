"""LiveKit room work in a child process (src/lkchaos/livekit/isolated.py), with children
that answer, raise, abort as the SDK's native runtime does (SIGABRT), and hang."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lkchaos.livekit.isolated import HandedBackError, RuntimeCrashed, run_isolated
from tests.unit import isolated_work


def test_the_childs_answer_is_returned() -> None:
    assert run_isolated(isolated_work.add, 2, 3, timeout_s=10) == 5


def test_what_the_work_raised_is_raised_here() -> None:
    with pytest.raises(ValueError, match="no room for you"):
        run_isolated(isolated_work.refuse, "no room for you", timeout_s=10)


def test_a_child_aborted_once_is_tried_again(tmp_path: Path) -> None:
    marker = tmp_path / "aborted"
    assert run_isolated(isolated_work.abort_once, str(marker), timeout_s=10) == "answered"
    assert marker.read_text() == "aborted once"


def test_a_child_aborted_every_time_is_reported_as_the_sdks_crash() -> None:
    with pytest.raises(RuntimeCrashed) as caught:
        run_isolated(isolated_work.abort, timeout_s=10)
    message = str(caught.value)
    assert message.count("was ended by SIGABRT") == 2, message
    assert "not the deployment" in message
    assert os.getpid()  # this process is still here


def test_work_past_its_bound_is_ended_by_the_child_itself() -> None:
    with pytest.raises(TimeoutError, match="did not finish in 1 s"):
        run_isolated(isolated_work.hang, timeout_s=1)


def test_a_child_that_never_answers_is_killed() -> None:
    with pytest.raises(TimeoutError, match="did not answer in 2 s"):
        run_isolated(isolated_work.freeze, timeout_s=1, start_s=1)


def test_work_a_child_could_not_import_runs_in_this_process() -> None:
    async def here() -> int:
        return os.getpid()

    assert run_isolated(here, timeout_s=10) == os.getpid()
    assert run_isolated(isolated_work.pid, timeout_s=10) != os.getpid()


def test_a_livekit_api_error_crosses_as_itself_with_its_status() -> None:
    # livekit.api.TwirpError takes `status` by keyword only: pickle alone cannot rebuild it,
    # and `validate` items caught a TypeError instead of LiveKit's 401.
    from livekit import api

    with pytest.raises(api.TwirpError) as caught:
        run_isolated(isolated_work.refuse_as_livekit, 401, timeout_s=10)
    error = caught.value
    assert (error.code, error.message, error.status) == ("unauthenticated", "invalid token", 401)
    assert error.metadata == {"hint": "check the API key"}


def test_an_error_that_cannot_be_rebuilt_here_is_raised_in_words() -> None:
    with pytest.raises(HandedBackError, match=r"_Unreadable: no such room at node 2"):
        run_isolated(isolated_work.refuse_unreadably, timeout_s=10)


def test_an_answer_that_cannot_be_read_back_is_an_error_that_says_so() -> None:
    with pytest.raises(HandedBackError, match="could not read back"):
        run_isolated(isolated_work.answer_unreadably, timeout_s=10)
