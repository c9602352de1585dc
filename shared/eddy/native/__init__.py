"""The C extensions: native Avro for flat records and the linear model kernel (each optional)."""
