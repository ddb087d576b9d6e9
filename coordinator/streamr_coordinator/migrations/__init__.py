"""Alembic migrations: the only way the schema changes. Run with ``streamr db upgrade``."""
