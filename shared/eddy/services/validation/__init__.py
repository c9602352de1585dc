"""Validation: checks every event against its stream's contract; good ones to S.validated, bad ones to S.dlq."""
