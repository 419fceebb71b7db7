"""Fixtures of the intake tests: ``pg_cluster``, a private real PostgreSQL (see pg.py)."""

from .pg import pg_cluster  # noqa: F401  (a session-scoped fixture, shared by every intake test)
