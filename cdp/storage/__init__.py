"""Storage: the database schema (SQLAlchemy Core), connections (SQLite connections get the
language's functions: sqlite_functions.py) and migrations. It knows nothing of the engines, which
compile over its tables (profile documents are loaded by cdp.engine.sql.loading)."""
