"""The model registry: versions, aliases, lineage and artifacts of every stream's models.

It is the only writer of aliases (``shared/eddy/ml/roles.py``). Every decision is one
SQLite transaction that also queues the outgoing model event (a transactional
outbox), so a crash at any point loses no decision and leaves one champion.
"""
