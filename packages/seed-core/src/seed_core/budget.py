"""A wall-time budget for a training run whose speed is not known ahead (a borrowed GPU, a shared CPU).

The run asks after each step how many steps it should make in all: at each tenth of the budget the count
is set from the rate measured since the last plan (at most the steps asked for), so a schedule that
depends on the end (a learning-rate decay, a recipe's stages) still lands on the last step; once the
time is spent the run ends at the step it is at. Used by `seed_mini.train` and `seed distill --minutes`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TimeBudget:
    seconds: float
    most: int  # the steps asked for
    start: int = 0  # the steps done when the run began (a resumed run)
    warm: int = 0  # steps before the rate is first timed (start-up, worker processes), and between plans
    started: float = field(init=False)
    plan_at: float = 0.1  # the share of the budget at which the next plan is made
    mark: tuple[int, float] | None = None  # (step, seconds) the rate is timed from
    rate: float = 0.0  # steps/s at the last plan
    spent: bool = False
    clock = staticmethod(time.perf_counter)  # not a field: tests put a clock of their own here

    def __post_init__(self) -> None:
        self.started = self.clock()

    def restart_rate(self, step: int) -> None:
        """Time the rate from here (after a pause the rate should not include, such as a profile)."""
        if self.mark is not None:
            self.mark = (step, self.clock() - self.started)

    def plan(self, step: int, steps: int) -> int:
        """The step count after `step` steps of a run planned for `steps`."""
        elapsed = self.clock() - self.started
        if elapsed >= self.seconds:
            self.spent = True
            return step
        if self.mark is None:
            if step >= self.start + self.warm:
                self.mark = (step, elapsed)
        elif elapsed >= self.plan_at * self.seconds and step >= self.mark[0] + max(1, self.warm):
            # re-planned at each tenth from the rate since the last plan: a machine that slows down or
            # frees up is followed
            self.rate = (step - self.mark[0]) / (elapsed - self.mark[1])
            self.mark, self.plan_at = (step, elapsed), self.plan_at + 0.1
            return min(self.most, step + max(1, int(self.rate * (self.seconds - elapsed))))
        return steps
