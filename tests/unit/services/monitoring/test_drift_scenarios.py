"""Issue acceptance on seeded synthetic streams: the right alert, soon enough, and none on a stable stream."""

from __future__ import annotations

import pytest

from bench.drift_scenarios import EXPECTED_KIND, change_begins, first_detection, run

CHANGE_AT = 10_000
# Labeled events (concept) or events (covariate) allowed between the change and the alert.
DEADLINE = {"concept_drift": 1_000, "data_drift": 2_000}


@pytest.mark.parametrize("kind", sorted(EXPECTED_KIND))
@pytest.mark.parametrize("seed", [1, 2])
def test_the_right_alert_fires_soon_after_the_change(kind: str, seed: int) -> None:
    fired = run(kind, n=13_000, change_at=CHANGE_AT, seed=seed)
    begins = change_begins(kind, CHANGE_AT)
    assert not [f for f in fired if f.index < begins], "an alert before the change is a false alarm"
    expected = EXPECTED_KIND[kind]
    delay = first_detection(fired, expected, begins)
    assert delay is not None and delay <= DEADLINE[expected], fired
    if kind == "covariate":
        assert {f.subject for f in fired if f.kind == "data_drift"} == {"x0"}  # only the feature that moved


@pytest.mark.parametrize("seed", [1, 2])
def test_no_alert_in_a_stationary_run(seed: int) -> None:
    assert run("stationary", n=20_000, seed=seed) == []
