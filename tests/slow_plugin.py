"""A plug-in strategy for the concurrency tests: random search whose evaluations take ``delay``
seconds and announce themselves (``RUN_DIR/scoring-PID`` holds the trial being scored), so a
test can pause or kill a worker in the middle of a trial."""

from __future__ import annotations

import os
import time

from acla_nas.search.strategies.random_search import RandomStrategy


class SlowRandom(RandomStrategy):
    name = "slow-random"
    OPTIONS = {"delay": (int, float)}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        ev = ctx.evaluator
        if ev is None:
            return
        inner, delay, run_dir = ev._score, float(self.options.get("delay", 1.0)), ctx.run_dir

        def slow(arch):
            (run_dir / f"scoring-{os.getpid()}").write_text(arch.key())
            time.sleep(delay)
            return inner(arch)

        ev._score = slow
