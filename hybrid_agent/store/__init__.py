"""Persistence: SQLAlchemy rows, the only place with SQL, and Alembic migrations."""
