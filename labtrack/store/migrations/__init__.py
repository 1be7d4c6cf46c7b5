"""Alembic migrations of the SQL store schema (run by `labtrack db upgrade`)."""
