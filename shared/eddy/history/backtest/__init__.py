"""Backtests: history through the production model code, in-process, deterministic."""
