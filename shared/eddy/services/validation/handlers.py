"""Pure validation rules: a record and its contract in, a list of violations out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from eddy.contracts.checks import CompiledChecker
from eddy.contracts.stream import StreamContract
from eddy.core.limits import MAX_FUTURE_MS
from eddy.core.topics import StreamTopics
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.validation import metrics
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.profile import ProfileTracker


class ValidateBatch:
    """The validation handler: route each decoded event to S.validated or the DLQ, and profile the valid ones.

    Profiles (``profile.py``) go to S.profiles: the reference once the first
    ``reference_size`` valid records were seen, the running one every interval.
    """

    def __init__(
        self,
        contracts: dict[str, StreamContract],
        config: ValidationConfig | None = None,
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.contracts = contracts
        self.config = config = config or ValidationConfig()
        # ``clock`` paces the profiles; ``wall_clock`` is what an event time is held against (Kafka's clock).
        self.clock = clock
        self.wall_clock = wall_clock
        self.checkers = {name: CompiledChecker(contract) for name, contract in contracts.items()}
        self.validated = {name: StreamTopics(name).validated for name in contracts}
        self.profiles = {
            name: ProfileTracker(contract, reference_size=config.reference_size, interval_s=config.profile_interval_s)
            for name, contract in contracts.items()
        }

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = self._route(records)
        self._profile(result.outputs)
        return result

    def _profile(self, outputs: list[OutRecord]) -> None:
        # Called only once the whole batch was routed: a batch retried record by record is not counted twice.
        valid: dict[str, list[InRecord]] = {}
        for out in outputs:
            if out.source is not None:
                valid.setdefault(out.source.stream, []).append(out.source)
        now = self.clock()
        for stream, tracker in self.profiles.items():
            records = valid.get(stream, [])
            if records and not tracker.taking_reference and self.config.profile_every > 1:
                records = records[:: self.config.profile_every]
            if records:
                tracker.observe(records)
            topic = StreamTopics(stream).profiles
            outputs.extend(OutRecord(topic, m.key, m.value) for m in tracker.due(now))

    def _route(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        outputs, dead = result.outputs, result.dead
        not_after_ms = int(self.wall_clock() * 1000) + MAX_FUTURE_MS
        for record in records:
            stream = record.stream
            value = record.value
            violations = self.checkers[stream](value, not_after_ms)
            if violations:
                for v in violations:
                    metrics.VIOLATIONS.labels(stream, v.field, v.rule).inc()
                summary = "; ".join(v.message for v in violations)
                dead.append(
                    record.dead(
                        "validation", f"contract:{violations[0].rule}", message=summary, violations=tuple(violations)
                    )
                )
                continue
            contract = self.contracts[stream]
            # Re-keyed by event_id whatever the producer used, so every topic of the stream co-partitions.
            outputs.append(
                OutRecord(
                    self.validated[stream],
                    value[contract.id_field],
                    value,
                    record.headers,
                    value[contract.time_field],
                    record,
                    record.raw,
                )
            )
        return result
