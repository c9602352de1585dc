"""Pure retraining triggers: an alert in, a ``retrain_requested`` model event out.

This is the first step of the retraining loop: building and evaluating
challengers and promoting through the model registry come on top of these
events (docs/architecture.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence

from services.retraining import metrics
from shared.contracts import StreamContract
from shared.loop import BatchResult, InRecord, OutRecord
from shared.topics import MODEL_EVENTS_TOPIC

# Kinds of alert that mean the model, not the data pipeline, is the problem.
RETRAIN_KINDS = {"concept_drift", "quality"}


class RequestRetrain:
    def __init__(self, contracts: dict[str, StreamContract], clock: Callable[[], float] = time.time) -> None:
        self.contracts = contracts
        self.clock = clock
        self._handled: set[tuple[str, int]] = set()

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            alert = record.value
            metrics.ALERTS.labels(alert["stream"], alert["kind"], alert["status"]).inc()
            if alert["status"] != "firing" or alert["kind"] not in RETRAIN_KINDS:
                continue
            # The same alert replayed after a restart must not ask twice.
            identity = (alert["alert_id"], alert["raised_at_ms"])
            if identity in self._handled or alert["stream"] not in self.contracts:
                continue
            self._handled.add(identity)
            contract = self.contracts[alert["stream"]]
            details = json.loads(alert.get("details") or "{}")
            event = {
                "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{identity[0]}@{identity[1]}")),
                "stream": contract.name,
                "model_name": alert["subject"] if alert["kind"] == "concept_drift" else contract.champion.name,
                "model_version": int(details.get("model_version", 0)),
                "event_type": "retrain_requested",
                "alias": None,
                "actor": "retraining",
                "at_ms": int(self.clock() * 1000),
                "details": json.dumps(
                    {
                        "reason": alert["kind"],
                        "alert_id": alert["alert_id"],
                        "statistic": alert["statistic"],
                        "value": alert["value"],
                        "evidence": {
                            "topic": alert["source_topic"],
                            "partition": alert.get("source_partition", -1),
                            "first_offset": alert["first_offset"],
                            "last_offset": alert["last_offset"],
                            "offsets": alert.get("offsets", []),
                        },
                    }
                ),
            }
            metrics.REQUESTS.labels(contract.name, alert["kind"]).inc()
            result.outputs.append(OutRecord(MODEL_EVENTS_TOPIC, contract.name, event, source=record))
        return result
