"""Settings of the service and of the commands that touch its database, from the environment.

Every setting is an environment variable prefixed ``CDP_`` (``CDP_DATABASE_URL``,
``CDP_MAX_BODY_BYTES`` …); command-line options of ``cdp serve`` override them. Reading settings
connects to nothing: the engine is created by the app factory's lifespan (cdp/api/app.py).

Database: by default an embedded SQLite file ``<CDP_DATA_DIR>/cdp.db`` (``var/cdp.db`` under the
working directory); a ``postgresql://…`` URL switches to PostgreSQL (the psycopg 3 driver is
filled in when the URL names none; it comes with the ``postgresql`` extra: ``pip install
'cdp[postgresql]'``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
GIB = 1024 * MIB


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: an SQLite file in data_dir. postgresql://… for PostgreSQL.")
    data_dir: Path = Field(default=Path("var"), description="Folder of the embedded database (created on start).")
    migrate_on_start: bool = Field(
        default=True, description="Upgrade the database to the newest migration on start; when false, refuse to "
                                  "start on a database that is not at the newest migration.")
    bootstrap_admin_key: SecretStr | None = Field(
        default=None, description="Fix the key of the admin created on first start (tests, demos); default: random, "
                                  "printed once to stderr.")
    max_body_bytes: int = Field(default=1 * MIB, ge=1024, description="Largest request body accepted (413 beyond); "
                                                                      "not for batch file uploads (max_file_bytes).")
    max_file_bytes: int = Field(
        default=1 * GIB, ge=1024,
        description="Largest batch file accepted by POST /v1/datasets/{id}/batches (413 `file_too_large` beyond); the "
                    "rest of that form may add up to max_body_bytes. Capped by what the database stores in one value "
                    "(SQLite: 1,000,000,000 bytes by default; PostgreSQL: 1 GiB - 1 MiB), which the error then names.")
    job_workers: int | None = Field(
        default=None, ge=1, le=32,
        description="Threads of the server that run background jobs (batch files …) at once; more wait in the queue. "
                    "Default: 1 on SQLite, where a job that applies a batch holds the database's one write lock (a "
                    "second would wait for it, and fail after the busy timeout); 2 on PostgreSQL.")
    rate_limit_per_second: float = Field(
        default=1000, ge=0, description="Requests a second one API key may make sustained (429 `rate_limited` with "
                                        "Retry-After beyond; 0: no limit). Per process (cdp/api/ratelimit.py).")
    rate_limit_burst: int = Field(default=2000, ge=1, description="Requests one API key may make at once before the "
                                                                  "per-second rate applies.")
    min_free_disk_bytes: int = Field(
        default=64 * MIB, ge=0, description="/healthz says `degraded` when the folder of the SQLite file or of the "
                                            "upload spool (the temporary folder) has less free space than this.")
    file_drop_root: Path | None = Field(
        default=None, description="When set, a file-drop source's folder must be under it (cdp/sources/file_drop.py).")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    # server processes of `cdp serve` (uvicorn workers): each a whole service on the same port
    workers: int = Field(default=1, ge=1, le=64)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme = value.split(":", 1)[0]
        if scheme in ("postgresql", "postgres"):
            return "postgresql+psycopg:" + value.split(":", 1)[1]
        if not scheme.startswith(("sqlite", "postgresql+")):
            raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://…")
        return value

    def resolved_database_url(self) -> str:
        """The URL to connect to; for the embedded default, creates the data folder."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir.resolve() / 'cdp.db'}"
