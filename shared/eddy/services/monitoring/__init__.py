"""Monitoring: model quality, latency and concept drift from the stream's topics; alerts on S.alerts."""
