"""Ingestion: the HTTP front door; JSON events and labels in, Avro on S.events and S.feedback out."""
