"""Retraining: reacts to alerts by requesting a retrain through a model lifecycle event."""
