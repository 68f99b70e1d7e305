"""Alembic migrations of the service's schema; run them with ``b24app.db.migrate``."""
