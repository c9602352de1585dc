"""The soak run CI does: 50 s of load at 400 events/s on the whole embedded stack (about 80 s in all).

Same checks as the long run (``python -m bench.soak``, ``tests/chaos/soak_probe.py``), with a looser
growth bound: after a 15 s warm-up a line through 18 samples moves more with a single allocation
step than one through 90 samples does, so each process may project max(30 MB, 25 %) over the run
instead of max(20 MB, 15 %). The verdict itself is tested first, on made-up samples, so that a
broken judge cannot pass a leaking stack.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.chaos.soak_probe import (
    BROKER,
    LoadTally,
    Outcome,
    Sample,
    SoakConfig,
    judge,
    lag_summary,
    run_soak,
)

CI_SOAK = SoakConfig(
    duration_s=50.0,
    rate=400.0,
    sample_interval_s=2.0,
    warmup_fraction=0.3,
    growth_floor_mb=30.0,
    growth_fraction=0.25,
    drain_timeout_s=20.0,
    stack_timeout_s=60.0,
)
UNIT = SoakConfig(duration_s=100.0, rate=100.0, sample_interval_s=5.0)
# Issue 23: the learner held at half its input rate for the whole run (about 90 s in all). By the end of
# the load its backlog is about 15 s of input, past the 3 s freshness threshold set for the run; the drain
# (at the same half speed) takes about as long as the load.
HALF_SPEED_SOAK = replace(
    CI_SOAK, duration_s=30.0, warmup_fraction=0.4, drain_timeout_s=60.0, learner_speed=0.5, max_lag_s=3.0
)


def made_up(
    rss_at: dict[str, float],
    mb_per_s: dict[str, float],
    join_per_s: float = 0.0,
    restart_at: float | None = None,
) -> list[Sample]:
    """Samples of a run of ``UNIT`` whose processes grow linearly, processing everything on time."""
    samples = []
    for step in range(int(UNIT.duration_s / UNIT.sample_interval_s) + 1):
        t = step * UNIT.sample_interval_s
        rss = {name: start + mb_per_s.get(name, 0.0) * t for name, start in rss_at.items()}
        pids = {name: 100 + i for i, name in enumerate(rss_at)}
        if restart_at is not None and t >= restart_at:
            pids["learning"] += 1000
        samples.append(Sample(t, rss, pids, 150.0 + join_per_s * t, UNIT.rate * t, 0.9 * UNIT.rate * t))
    return samples


def outcome_of(samples: list[Sample], accepted: int = 10_000) -> Outcome:
    tally = LoadTally(planned=accepted, accepted_events=accepted, accepted_labels=9000, elapsed_s=UNIT.duration_s)
    return Outcome(samples, tally, predictions=accepted, learned=9000, restarts={})


PROCESSES = {"supervisor": 200.0, "learning": 210.0, BROKER: 20.0}


def test_a_flat_stack_passes_and_the_broker_is_not_judged() -> None:
    verdict = judge(outcome_of(made_up(PROCESSES, {BROKER: 1.0})), UNIT)
    assert verdict.passed, verdict.table()
    broker = next(g for g in verdict.processes if g.name == BROKER)
    assert not broker.judged and broker.slope_per_min == pytest.approx(60.0)


def test_a_process_growing_past_the_bound_fails() -> None:
    # 0.35 MB/s projects 35 MB over 100 s: above max(20 MB, 15 % of ~236 MB).
    verdict = judge(outcome_of(made_up(PROCESSES, {"learning": 0.35})), UNIT)
    learning = next(g for g in verdict.processes if g.name == "learning")
    assert not verdict.passed and not learning.passed
    assert "projected growth" in learning.verdict


def test_growth_during_the_warm_up_only_passes() -> None:
    samples = made_up(PROCESSES, {})
    for s in samples:
        s.rss_mb["learning"] += min(s.at_s, 20.0) * 3.0  # 60 MB in the first 20 s, then flat
    assert judge(outcome_of(samples), UNIT).passed


def test_a_join_state_that_keeps_growing_fails() -> None:
    # Predictions never expired: 20 entries/s for 100 s, more than a label delay's worth (100).
    verdict = judge(outcome_of(made_up(PROCESSES, {}, join_per_s=20.0)), UNIT)
    assert not verdict.join_state.passed


def test_a_restart_fails() -> None:
    verdict = judge(outcome_of(made_up(PROCESSES, {}, restart_at=50.0)), UNIT)
    learning = next(g for g in verdict.processes if g.name == "learning")
    assert "restarted 1x" in learning.verdict and not verdict.passed


def test_a_load_that_was_not_processed_fails() -> None:
    samples = [Sample(s.at_s, s.rss_mb, s.pids, s.join_state, 0.0, 0.0) for s in made_up(PROCESSES, {})]
    outcome = Outcome(samples, outcome_of(samples).tally, predictions=0.0, learned=0.0, restarts={})
    verdict = judge(outcome, UNIT)
    assert [c.name for c in verdict.checks if not c.passed] == [
        "predictions per second after warm-up",
        "predictions made (after the drain)",
        "labels learned (after the drain)",
    ]


def test_the_lag_after_the_warm_up_is_summarised() -> None:
    samples = made_up(PROCESSES, {})
    for s in samples:
        # Behind by 50,000 records during the warm-up (not counted), then by 10 to 200.
        s.lag.update(learning=50_000.0 if s.at_s < UNIT.warmup_s else 10.0 + s.at_s, inference=0.0)
    assert lag_summary(samples, UNIT) == (
        "consumer lag after warm-up, peak/median/last (records): inference 0/0/0, learning 110/72/110"
    )


def test_a_lateness_longer_than_the_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        SoakConfig(duration_s=60.0, rate=100.0, allowed_lateness_s=30.0)


@pytest.mark.e2e
def test_short_soak_shows_no_unbounded_growth(tmp_path: Path) -> None:
    result = run_soak(CI_SOAK, tmp_path)
    print(result.report())
    assert result.passed, result.report()


def test_a_learner_speed_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="learner_speed"):
        SoakConfig(duration_s=60.0, rate=100.0, learner_speed=1.5)


@pytest.mark.e2e
def test_a_learner_at_half_speed_stays_bounded_and_loses_nothing(tmp_path: Path) -> None:
    """Memory and join state bounded while learning lags; every label learned in the end; the lag seen."""
    result = run_soak(HALF_SPEED_SOAK, tmp_path)
    print(result.report())
    assert result.passed, result.report()
    assert result.outcome.learned >= result.outcome.tally.accepted_labels, "every accepted label is learned"
    lagging = result.freshness["when the load ended"]
    assert lagging["freshness"]["lag_s"] > HALF_SPEED_SOAK.max_lag_s and "learning_lag" in lagging["alerts"], (
        result.report()
    )
    assert result.freshness["after the drain"]["freshness"]["lag_s"] == 0.0, result.report()
