"""Data drift (each feature against the reference profile) and prediction drift (the score distribution).

Both count values into fixed bins over tumbling windows and compute PSI when a
window completes; a condition fires at ``psi >= threshold`` and clears once a
window comes back under half of it, so a value hovering at the threshold does
not flap. Each numeric feature also feeds a streaming ADWIN detector on its
values: it reacts within a window, and its detections are counted and shown
next to the PSI, while the alert itself rests on PSI's stable false-alarm rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift

from eddy.contracts.monitoring import WindowSpec
from eddy.ml.models import class_key
from eddy.services.monitoring.alerts import Evidence, Reading
from eddy.services.monitoring.psi import Binning, psi

CLEAR_RATIO = 0.5


@dataclass
class WindowedPsi:
    """Counts of one window against one binning; ``psi`` is the last complete window's value."""

    binning: Binning
    counts: np.ndarray = field(init=False)
    psi: float | None = None
    drifting: bool = False

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.binning.size, dtype=np.int64)

    def rebin(self, binning: Binning) -> None:
        """Count the next windows against ``binning``; the last PSI and the condition carry over."""
        self.binning = binning
        self.counts = np.zeros(binning.size, dtype=np.int64)

    def add(self, values: Sequence[Any]) -> None:
        self.counts += self.binning.counts(values)

    def close(self, threshold: float) -> bool:
        """End the window: its PSI, and whether the condition holds now (in the dead band: as it was)."""
        self.psi = psi(self.binning.expected, self.counts.tolist())
        self.counts[:] = 0
        if self.psi >= threshold:
            self.drifting = True
        elif self.psi < threshold * CLEAR_RATIO:
            self.drifting = False
        return self.drifting


@dataclass(frozen=True)
class Judgement:
    """A condition's state after a window, with the reading that decided it."""

    kind: str
    subject: str
    firing: bool
    reading: Reading


class DataDrift:
    """PSI of every feature of validated events against the reference profile, over tumbling windows."""

    def __init__(self, features: Sequence[str], numeric: set[str], spec: WindowSpec, topic: str) -> None:
        self.features = list(features)
        self.spec = spec
        self.evidence = Evidence(topic)
        self.watches: dict[str, WindowedPsi] = {}
        self.detectors = {name: drift.ADWIN(delta=0.0001) for name in features if name in numeric}
        self.detections: dict[str, int] = dict.fromkeys(features, 0)
        self.in_window = 0
        self.has_reference = False

    def set_reference(self, profile: dict[str, Any]) -> None:
        """Adopt a reference profile record (``S.profiles``, kind ``reference``); restarts the window."""
        by_name = {stats["name"]: stats for stats in profile["features"]}
        self.watches = {}
        for name in self.features:
            binning = Binning.from_profile(by_name[name]) if name in by_name else None
            if binning is not None:
                self.watches[name] = WindowedPsi(binning)
        self.has_reference = True
        self.in_window = 0
        self.evidence.reset()

    def observe(self, values: Sequence[dict[str, Any]], coordinates: Sequence[tuple[int, int]]) -> list[Judgement]:
        """Count a batch of validated records; judge each window that completes inside it."""
        detected = self._detect(values)
        if not self.watches:
            return []
        judgements = []
        start = 0
        while start < len(values):
            take = min(len(values) - start, self.spec.window - self.in_window)
            chunk = values[start : start + take]
            for name, watch in self.watches.items():
                watch.add([v.get(name) for v in chunk])
            for partition, offset in (coordinates[start], coordinates[start + take - 1]):
                self.evidence.cover(partition, offset)
            self.in_window += take
            start += take
            if self.in_window == self.spec.window:
                judgements += self._close(coordinates[start - 1], detected)
        return judgements

    def _detect(self, values: Sequence[dict[str, Any]]) -> dict[str, int]:
        detected = {}
        for name, detector in self.detectors.items():
            hits = 0
            for v in values:
                x = v.get(name)
                if x is not None:
                    detector.update(x)
                    hits += detector.drift_detected
            if hits:
                self.detections[name] += hits
                detected[name] = hits
        return detected

    def _close(self, trigger: tuple[int, int], detected: dict[str, int]) -> list[Judgement]:
        judgements = []
        for name, watch in self.watches.items():
            firing = watch.close(self.spec.psi_threshold)
            reading = Reading(
                "psi",
                watch.psi or 0.0,
                self.spec.psi_threshold,
                f"{self.spec.window} validated events against the reference profile",
                self.evidence,
                trigger,
                details={"adwin_detections": self.detections[name], "bins": watch.binning.size},
            )
            judgements.append(Judgement("data_drift", name, firing, reading))
        self.in_window = 0
        self.evidence = Evidence(self.evidence.topic)
        return judgements


class ScoreDrift:
    """PSI of one model's score distribution, each window against the one before it.

    The score is P(positive class) for binary tasks, the predicted class for
    multiclass, and the predicted value for regression. The reference rolls
    because a model that keeps learning keeps sharpening its scores: against a
    fixed reference, an online learner on a perfectly stable stream would
    drift on its own. Against the previous window, what shows is a change
    between two windows; slow shifts of the inputs are data drift's to catch.
    The first ``warmup`` scores, while a new model settles, are skipped.
    """

    def __init__(self, model: str, spec: WindowSpec, categorical: bool, topic: str) -> None:
        self.model = model
        self.spec = spec
        self.categorical = categorical
        self.evidence = Evidence(topic)
        self.skipped = 0
        self.sample: list[Any] = []
        self.watch: WindowedPsi | None = None

    @property
    def psi(self) -> float | None:
        return self.watch.psi if self.watch is not None else None

    def observe(self, scores: Sequence[Any], coordinates: Sequence[tuple[int, int]]) -> list[Judgement]:
        judgements = []
        for score, (partition, offset) in zip(scores, coordinates, strict=True):
            if score is None:
                continue
            if self.skipped < self.spec.warmup:
                self.skipped += 1
                continue
            self.sample.append(score)
            self.evidence.cover(partition, offset)
            if len(self.sample) == self.spec.window:
                judgement = self._close((partition, offset))
                if judgement is not None:
                    judgements.append(judgement)
        return judgements

    def _close(self, trigger: tuple[int, int]) -> Judgement | None:
        sample, self.sample = self.sample, []
        judgement = None
        if self.watch is not None:
            self.watch.add(sample)
            firing = self.watch.close(self.spec.psi_threshold)
            reading = Reading(
                "psi",
                self.watch.psi or 0.0,
                self.spec.psi_threshold,
                f"{self.spec.window} predictions against the {self.spec.window} before them",
                self.evidence,
                trigger,
            )
            judgement = Judgement("prediction_drift", self.model, firing, reading)
        binning = _categories(sample) if self.categorical else Binning.from_sample(sample)
        if self.watch is None:
            self.watch = WindowedPsi(binning)
        else:
            self.watch.rebin(binning)
        self.evidence = Evidence(self.evidence.topic)
        return judgement


def _categories(sample: Sequence[Any]) -> Binning:
    counts: dict[str, int] = {}
    for value in sample:
        counts[class_key(value)] = counts.get(class_key(value), 0) + 1
    keys = sorted(counts)
    return Binning([*(counts[k] / len(sample) for k in keys), 0.0, 0.0], None, {k: i for i, k in enumerate(keys)})
