"""The Kafka bridge: JSON records on ``S.raw`` become Avro events on ``S.events``.

The same conversion as the HTTP gateway and ``eddy produce`` (``eddy.contracts.records``);
a record that cannot be converted goes to ``S.dlq`` with its original bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from eddy.contracts.records import INGESTED_AT_HEADER, RecordError, now_ms, to_event
from eddy.contracts.stream import StreamContract
from eddy.core.topics import StreamTopics
from eddy.runtime.loop import BatchResult, InRecord, OutRecord


class BridgeRaw:
    def __init__(self, contracts: dict[str, StreamContract], pii_key: bytes = b"") -> None:
        self.contracts = contracts
        self.pii_key = pii_key

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        received = now_ms()
        for record in records:
            contract = self.contracts[record.stream]
            try:
                event = to_event(record.value, contract, received, self.pii_key)
            except RecordError as exc:
                result.dead.append(record.dead("ingestion", "rejected", exc))
                continue
            headers = [h for h in record.headers if h[0] != INGESTED_AT_HEADER]
            headers.append((INGESTED_AT_HEADER, str(received).encode()))
            result.outputs.append(
                OutRecord(
                    StreamTopics(record.stream).events,
                    event[contract.id_field],
                    event,
                    headers,
                    event[contract.time_field],
                    record,
                )
            )
        return result
