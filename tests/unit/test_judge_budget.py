"""The judge's CPU budget (:mod:`lkchaos.load.budget`): a token bucket of CPU-seconds that
accrues per caller in a call and is spent by what the judge's threads measured."""

from __future__ import annotations

import threading
import time

import pytest

from lkchaos.load.budget import JudgeBudget


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_credit_accrues_per_caller_second_and_is_spent() -> None:
    clock = Clock()
    budget = JudgeBudget(0.01, burst_s=0.0, clock=clock)
    assert budget.take() is None  # no caller yet, no credit
    budget.join("a")
    budget.join("b")
    clock.now += 10  # 2 callers x 10 s x 0.01 cores: 0.2 CPU-second
    budget.spend(0.15)
    reserved = budget.take()  # 0.05 left: it may, reserving a first estimate
    assert reserved == 0.3
    budget.spend(0.1)  # what it cost, measured
    budget.release(reserved)
    assert budget.take() is None  # 0.05 short
    clock.now += 2  # 2 x 2 x 0.01 = 0.04: still 0.01 short
    assert budget.take() is None
    clock.now += 1
    assert budget.take() is not None
    assert budget.summary() == {"cores_per_caller": 0.01, "caller_s": 26.0,
                                "spent_cpu_s": 0.25, "transcribed": 2, "skipped": 3}


def test_a_caller_that_left_earns_nothing_and_leaving_twice_is_harmless() -> None:
    clock = Clock()
    budget = JudgeBudget(0.01, burst_s=0.0, clock=clock)
    budget.join("a")
    clock.now += 10
    budget.leave("a")
    budget.leave("a")
    budget.leave("never-joined")
    clock.now += 1000
    assert budget.summary()["caller_s"] == 10.0
    budget.spend(0.1)
    assert budget.take() is None


def test_a_run_starts_with_its_burst_and_zero_means_no_limit() -> None:
    clock = Clock()
    assert JudgeBudget(0.001, burst_s=1.0, clock=clock).take() is not None  # at once
    unlimited = JudgeBudget(0, clock=clock)
    unlimited.spend(1000.0)
    assert [unlimited.take() for _ in range(5)] == [0.0] * 5  # nothing to reserve


def test_over_a_run_the_sampled_transcriptions_stay_within_the_budget() -> None:
    """Four callers for 1000 s, a sampled reply offered every second, each costing 0.3
    CPU-second: the judge spends at most budget x caller-seconds + burst + one reply."""
    clock = Clock()
    budget = JudgeBudget(0.002, burst_s=1.0, clock=clock)
    for caller in "abcd":
        budget.join(caller)
    for _ in range(1000):
        clock.now += 1
        reserved = budget.take()
        if reserved is not None:
            budget.spend(0.3)
            budget.release(reserved)
    summary = budget.summary()
    assert summary["spent_cpu_s"] <= 0.002 * 4 * 1000 + 1.0 + 0.3
    assert summary["spent_cpu_s"] >= 0.002 * 4 * 1000 - 0.3  # and uses what it has
    assert summary["transcribed"] == 31 and summary["skipped"] == 969  # 9.0 s, 0.3 each


def test_replies_waiting_for_a_shared_window_are_paid_for_when_taken() -> None:
    """200 callers' sampled replies wait up to 30 s for their Whisper window: each reserves
    what a reply has cost so far, so the budget stops granting before their cost is spent
    (without the reservation every reply offered before the window was read would pass)."""
    clock = Clock()
    budget = JudgeBudget(0.002, burst_s=1.0, clock=clock)
    for caller in range(200):
        budget.join(str(caller))
    for _ in range(3):  # three replies judged: the estimate is their mean, 0.25 s
        reserved = budget.take()
        budget.spend(0.25)
        budget.release(reserved)
    waiting = []
    for _ in range(30):  # 30 s of replies, 6 offered a second, none judged yet
        clock.now += 1
        waiting += [r for r in (budget.take() for _ in range(6)) if r is not None]
    # 1.0 + 0.002 x 200 x 30 = 13 CPU-seconds of credit, 0.75 of it spent: 49 replies of
    # 0.25, and a 50th granted on the last crumb of credit.
    assert len(waiting) == 50 and set(waiting) == {0.25}
    for reserved in waiting:  # the window read: what it cost spent, the reservations back
        budget.spend(0.25)
        budget.release(reserved)
    assert budget.summary()["spent_cpu_s"] == pytest.approx(13.0, abs=0.3)


def busy(seconds: float) -> int:
    """Keep this thread on the CPU for ``seconds`` of its own CPU time."""
    end, n = time.thread_time() + seconds, 0
    while time.thread_time() < end:
        n += 1
    return n


def test_timed_spends_the_cpu_used_not_the_time_waited() -> None:
    budget = JudgeBudget(0.01)
    assert budget.timed(busy)(0.05) > 0
    spent = budget.spent_s
    assert spent >= 0.05
    budget.timed(time.sleep)(0.2)  # waiting costs no CPU
    assert budget.spent_s - spent < 0.05
    with pytest.raises(ZeroDivisionError):  # a failing call still spends what it used
        budget.timed(lambda: 1 / 0)()


def test_timed_spends_the_cpu_of_the_threads_the_call_works_on() -> None:
    """Whisper transcribes on CTranslate2's own threads: a clock of the calling thread alone
    saw 0.005 CPU-second of a 0.37 one."""
    budget = JudgeBudget(0.01)

    def on_another_thread() -> None:
        worker = threading.Thread(target=busy, args=(0.1,))
        worker.start()
        worker.join()

    budget.timed(on_another_thread)()
    assert budget.spent_s >= 0.09


def test_callers_join_and_leave_from_many_threads() -> None:
    clock = Clock()
    budget = JudgeBudget(0.01, burst_s=0.0, clock=clock)

    def churn(i: int) -> None:
        for k in range(200):
            budget.join(f"{i}-{k}")
            budget.leave(f"{i}-{k}")

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    budget.join("last")
    clock.now += 10
    assert budget.summary()["caller_s"] == 10.0  # every other caller left


@pytest.mark.parametrize("value", [-0.001, 1.5, True, "0.002", None])
def test_a_budget_outside_zero_to_one_core_per_caller_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="from 0 \\(no limit\\) to 1 cores per caller"):
        JudgeBudget(value)  # type: ignore[arg-type]
