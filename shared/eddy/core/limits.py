"""Limits Kafka itself puts on records, which eddy checks before Kafka refuses a whole batch."""

# Apache Kafka refuses a record stamped further ahead of the broker's clock than
# log.message.timestamp.after.max.ms (1 h by default), and with it every other record of its batch:
# eddy rejects such times where they come in (ingestion, validation) instead of producing them.
MAX_FUTURE_MS = 3_600_000
