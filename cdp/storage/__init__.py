"""Storage: the database schema (SQLAlchemy Core), connections, migrations and loading."""
