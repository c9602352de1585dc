"""Confluent-compatible Schema Registry (Avro only) for the eddy platform.

The service speaks the Confluent Schema Registry REST API so that the stock
Confluent serializers can point at it unchanged. State lives in memory and is
made durable through an append-only journal under the data directory.
"""
