from __future__ import annotations

import pytest

from seed_core.budget import TimeBudget


def test_a_time_budget_plans_the_steps_from_the_measured_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(lambda: now[0]))
    budget = TimeBudget(10.0, most=1000)
    now[0] = 0.5
    assert budget.plan(1, 1000) == 1000  # the first step (start-up included) only marks the clock
    now[0] = 1.0
    assert budget.plan(11, 1000) == 11 + 20 * 9  # 10 steps in 0.5 s, 9 s left
    now[0] = 1.5
    assert budget.plan(21, 191) == 191  # the next plan is at 2 s
    now[0] = 2.0
    assert budget.plan(231, 191) == 1000  # 220 steps/s since the last plan: capped at the steps asked for
    now[0] = 10.5
    assert budget.plan(100, 1000) == 100  # time spent: end here


def test_a_warm_start_times_the_rate_after_the_first_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(lambda: now[0]))
    budget = TimeBudget(10.0, most=1000, start=100, warm=20)
    now[0] = 2.0
    assert budget.plan(110, 1000) == 1000 and budget.mark is None  # still warming up
    assert budget.plan(120, 1000) == 1000 and budget.mark == (120, 2.0)
    now[0] = 3.0
    assert budget.plan(130, 1000) == 1000  # a plan waits for `warm` steps after the mark
    assert budget.plan(140, 1000) == 140 + 20 * 7  # 20 steps in 1 s, 7 s left
