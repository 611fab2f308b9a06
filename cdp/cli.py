"""The `cdp` command line. Its JSON output is a stable contract (SPEC.md, "The command line
contract"): tools parse it, so fields are only ever added, never renamed."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from cdp.dsl.errors import PqlError

EXIT_INVALID = 1


class InputError(Exception):
    """Bad input to a command: printed as `code: message` lines on stderr, exit 1."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(EXIT_INVALID)


def _error_lines(error: PqlError) -> list[str]:
    return [
        f"{d.code}: {d.message} (line {d.span.line}, column {d.span.column})" + (f"; hint: {d.hint}" if d.hint else "")
        for d in error.errors
    ]


def _read_json_object(path: str, what: str) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError([f"unreadable_file: {what} {path}: {exc.strerror or exc}"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError([f"invalid_file: {what} {path} is not valid JSON: {exc}"]) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError([f"invalid_file: {what} {path} must be a JSON object of names to expression strings"])
    return data


def _read_profiles(path: str) -> list[Any]:
    from cdp.engine import ProfileError, load_profile

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([f"unreadable_file: profiles {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise InputError([f"invalid_file: profiles {path} is not UTF-8: {exc}"]) from None
    profiles, errors = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            profiles.append(load_profile(json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.append(f"invalid_profile: {path} line {number}: not valid JSON: {exc.msg}")
        except ProfileError as exc:
            errors.append(f"invalid_profile: {path} line {number}: {exc}")
        except ValueError:  # the parser's refusal of an integer of more than 4,300 digits
            errors.append(f"invalid_profile: {path} line {number}: not valid JSON: a number has more than 4,300 "
                          f"digits")
    if errors:
        raise InputError(errors)
    return profiles


def _parse_as_of(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    from cdp.engine.profile import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise InputError([f"invalid_argument: --as-of {text!r} is not an ISO 8601 datetime: {exc}"]) from None


@click.group()
@click.version_option(package_name="cdp")
def main() -> None:
    """cdp — the open-source core of a real-time customer data platform."""


@main.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON result instead of text.")
@click.option("--segments", "segments_file", type=str, default=None,
              help='A JSON object {"key": "expression", ...} that `in segment` references must name.')
@click.argument("expression")
def check_command(expression: str, as_json: bool, segments_file: str | None) -> None:
    """Check EXPRESSION against the schema in force; exit 0 when valid, 1 when not."""
    from cdp.dsl import check, render

    try:
        segments = _read_json_object(segments_file, "segments") if segments_file else None
    except InputError as exc:
        if as_json:
            code, _, message = exc.lines[0].partition(": ")
            click.echo(json.dumps({"ok": False, "errors": [
                {"code": code, "message": message, "line": None, "column": None, "end_line": None,
                 "end_column": None, "hint": None}]}))
            sys.exit(EXIT_INVALID)
        _fail(exc.lines)
        return
    try:
        typed = check(expression, segments=segments)
    except PqlError as error:
        if as_json:
            click.echo(json.dumps({"ok": False, "errors": [d.to_dict() for d in error.errors]}, ensure_ascii=False))
        else:
            for diagnostic in error.errors:
                click.echo(str(diagnostic) + "\n", err=True)
        sys.exit(EXIT_INVALID)
    from cdp.dsl.value_warnings import value_warnings
    from cdp.schema import luma_schema

    canonical = render(typed)
    warnings = value_warnings(typed, luma_schema(), expression)
    if as_json:
        click.echo(json.dumps({"ok": True, "canonical": canonical, "warnings": [w.to_dict() for w in warnings]},
                              ensure_ascii=False))
    else:
        for warning in warnings:
            click.echo("warning: " + str(warning) + "\n", err=True)
        click.echo(f"ok: {canonical}")


@main.command("evaluate")
@click.argument("expression", required=False)
@click.option("--profiles", "profiles_file", required=True, help="Profile documents, one JSON object per line.")
@click.option("--as-of", "as_of_text", default=None, help="The instant to evaluate at (ISO 8601; default: now, UTC).")
@click.option("--segments", "segments_file", default=None, help="Catalogue for `in segment`: a JSON object key → expression.")
@click.option("--expressions", "expressions_file", default=None,
              help="Evaluate a catalogue instead: a JSON object name → expression; prints name → ids as JSON.")
@click.option("--backend", type=click.Choice(["memory", "sqlite", "postgresql", "duckdb", "spark"]), default="memory",
              show_default=True, help="duckdb and spark run over the profiles as a snapshot's tables (the analytics "
                                      "and spark extras; spark: local, or CDP_SPARK_MASTER).")
@click.option("--database-url", default=None,
              help="Database for --backend sqlite|postgresql (default for sqlite: in memory). Only temporary "
                   "tables of the run's own session are used: the database is never migrated or changed.")
@click.option("--explain", is_flag=True, help="Print the value of every sub-expression for each profile (or --id).")
@click.option("--id", "profile_id", default=None, help="With --explain: only this profile.")
def evaluate_command(expression: str | None, profiles_file: str, as_of_text: str | None, segments_file: str | None,
                     expressions_file: str | None, backend: str, database_url: str | None,
                     explain: bool, profile_id: str | None) -> None:
    """Print the ids of the profiles in --profiles for which EXPRESSION is TRUE, in file order."""
    try:
        _evaluate(expression, profiles_file, as_of_text, segments_file, expressions_file, backend, database_url,
                  explain, profile_id)
    except InputError as exc:
        _fail(exc.lines)
    except PqlError as error:
        _fail(_error_lines(error))


def _evaluate(expression, profiles_file, as_of_text, segments_file, expressions_file, backend, database_url,
              explain, profile_id):
    from cdp.dsl import check, check_catalogue
    from cdp.engine import compile_predicate
    from cdp.engine.memory import explain as explain_profile

    if (expression is None) == (expressions_file is None):
        raise InputError(["invalid_argument: give either EXPRESSION or --expressions FILE"])
    if backend == "postgresql" and not database_url:
        raise InputError(["invalid_argument: --backend postgresql needs --database-url postgresql://…"])
    if backend in ("memory", "duckdb", "spark") and database_url:
        raise InputError(["invalid_argument: --database-url goes with --backend sqlite or postgresql"])
    if explain and backend != "memory":
        raise InputError(["invalid_argument: --explain runs in memory; drop --backend"])
    as_of = _parse_as_of(as_of_text)
    segments = _read_json_object(segments_file, "segments") if segments_file else {}
    expressions = _read_json_object(expressions_file, "expressions") if expressions_file else {"": expression}
    # Check everything before reading data, and report every error at once.
    errors: list[str] = []
    if segments:
        try:
            check_catalogue(segments)
        except PqlError as error:
            errors.extend(_error_lines(error))
    predicates = {}
    for name, text in expressions.items():
        try:
            check(text, segments=segments or None)
            predicates[name] = compile_predicate(text, segments=segments)
        except PqlError as error:
            lines = _error_lines(error)
            errors.extend(lines if not name else [line.replace(": ", f": in expression \"{name}\": ", 1) for line in lines])
    if errors:
        raise InputError(list(dict.fromkeys(errors)))
    profiles = _read_profiles(profiles_file)
    if explain:
        chosen = [p for p in profiles if profile_id is None or p.id == profile_id]
        if profile_id is not None and not chosen:
            raise InputError([f"invalid_argument: no profile with id {profile_id!r} in {profiles_file}"])
        for name, text in expressions.items():
            for profile in chosen:
                click.echo(f"profile {profile.id}" + (f", expression {name}" if name else "") + f", as of {as_of.isoformat()}")
                for row in explain_profile(text, profile, as_of, segments=segments):
                    click.echo(f"{'  ' * row['depth']}{row['value']:<8} {row['expression']}")
                click.echo("")
        return
    if backend == "memory":
        result = {name: [p.id for p in profiles if predicate(p, as_of)] for name, predicate in predicates.items()}
    elif backend in ("duckdb", "spark"):
        from cdp.engine.sql.analytic import evaluate_documents, open_session
        from cdp.engine.support import UnsupportedOnBackend

        try:
            session = open_session(backend)
        except ImportError as exc:
            extra = "analytics" if backend == "duckdb" else "spark"
            raise InputError([f"missing_driver: {exc}; pip install 'cdp[{extra}]'"]) from None
        try:
            result = evaluate_documents(backend, profiles, expressions, as_of=as_of, segments=segments,
                                        session=session)
        except UnsupportedOnBackend as exc:
            raise InputError([f"unsupported: {exc}"]) from None
        finally:
            session.close()
    else:
        result = _evaluate_in_database(backend, database_url, profiles, expressions, segments, as_of)
    if expressions_file is None:
        for profile_id_ in result[""]:
            click.echo(profile_id_)
        return
    click.echo(json.dumps(result, ensure_ascii=False))


# Where `cdp evaluate` puts the profiles: the session's own temporary schema. The Core tables of
# cdp.storage.models are rendered there (schema_translate_map), so nothing of the database's own
# is read, created, migrated or changed, and what the run loaded vanishes with its session.
_TEMPORARY_SCHEMA = {"postgresql": "pg_temp", "sqlite": "temp"}


def _evaluate_in_database(backend, database_url, profiles, expressions, segments, as_of) -> dict[str, list[str]]:
    """Load the profiles into temporary tables of this run's own session and run the compiled SQL
    of each expression there; the transaction is rolled back at the end. The database given by
    --database-url is left as it was found: no migration, no table, no row (an SQLite file is even
    opened read-only). A database where the session cannot create temporary tables is refused."""
    import sqlalchemy as sa

    from cdp.engine import sql
    from cdp.engine.support import UnsupportedOnBackend
    from cdp.storage.database import MissingDriverError, create_engine
    from cdp.engine.sql.loading import load_documents
    from cdp.storage.models import metadata

    if database_url is None:  # sqlite without a URL: an in-memory database of this run's own
        database_url = "sqlite://"
    try:
        engine = create_engine(database_url, read_only=True)
    except MissingDriverError as exc:
        raise InputError([f"missing_driver: {exc}"]) from None
    except FileNotFoundError as exc:
        raise InputError([f"invalid_argument: --database-url: {exc}"]) from None
    except (sa.exc.ArgumentError, ImportError) as exc:  # unknown dialect or driver
        raise InputError([f"invalid_argument: --database-url {database_url!r} is not a database URL cdp can use: "
                          f"{exc}"]) from None
    if engine.dialect.name != backend:
        engine.dispose()
        raise InputError([f"invalid_argument: --database-url is a {engine.dialect.name} URL, not {backend}"])
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(
                schema_translate_map={None: _TEMPORARY_SCHEMA[engine.dialect.name]})
            transaction = connection.begin()
            try:
                try:
                    metadata.create_all(connection, checkfirst=False)  # a new session: its own, empty
                except sa.exc.DBAPIError as exc:
                    raise InputError([
                        f"database_error: cannot create temporary tables in this database "
                        f"({_first_line(exc)}); cdp evaluate works only in temporary tables of its own "
                        f"session and never changes the database"]) from None
                load_documents(connection, profiles, sandbox="evaluate")
                return {name: sql.evaluate(connection, text, as_of=as_of, sandbox="evaluate", segments=segments)
                        for name, text in expressions.items()}
            finally:
                transaction.rollback()  # the temporary tables and everything in them go with it
    except UnsupportedOnBackend as exc:
        raise InputError([f"unsupported: {exc}"]) from None
    except sa.exc.DBAPIError as exc:
        raise InputError([f"database_error: {_first_line(exc)}"]) from None
    finally:
        engine.dispose()


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---- the service ------------------------------------------------------------------------------


def _settings(**overrides: Any):
    """Settings from the environment (CDP_*), with the command's options on top."""
    from pydantic import ValidationError

    from cdp.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail([f"invalid_setting: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()])


@main.command("serve")
@click.option("--host", default=None, help="Interface to listen on (CDP_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (CDP_PORT; default 8000).")
@click.option("--database-url", default=None,
              help="CDP_DATABASE_URL; default: the embedded SQLite file var/cdp.db. postgresql://… for PostgreSQL.")
@click.option("--log-level", default=None, help="uvicorn log level (CDP_LOG_LEVEL; default info).")
@click.option("--demo", is_flag=True, help="Load the Luma demo profiles into an empty `prod` sandbox first.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Server processes sharing the port (CDP_WORKERS; default 1). Several are for PostgreSQL: on "
                   "SQLite they queue for the one write lock.")
def serve_command(host: str | None, port: int | None, database_url: str | None, log_level: str | None,
                  demo: bool, workers: int | None) -> None:
    """Run the HTTP service (API under /v1, docs at /docs).

    The database is upgraded to the newest migration first (or the start is refused, saying
    why); on the first start an admin key is created and printed once to stderr. With
    ``--workers N`` uvicorn starts N processes on the port, each the whole service (its own
    connection pool, job workers, rate-limit buckets and /metrics counters), as several servers
    sharing one database are."""
    import uvicorn

    from cdp.api import create_app
    from cdp.api.process import load_demo_data, tune_gc
    from cdp.api.startup import StartupError, bootstrap_admin, prepare_database

    settings = _settings(host=host, port=port, database_url=database_url, log_level=log_level, workers=workers)
    try:  # the same steps the app's start-up runs, first here: a refusal is one clear line, exit 1
        engine = prepare_database(settings.resolved_database_url(), migrate=settings.migrate_on_start)
        try:
            fixed = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
            new_key = bootstrap_admin(engine, fixed)
            if demo:
                load_demo_data(engine, settings, say=lambda text: click.echo(f"cdp: {text}", err=True))
        finally:
            engine.dispose()
    except StartupError as exc:
        _fail([f"cannot_start: {exc}"])
    from cdp.api.protocol import MAX_HEADER_BYTES, serving_protocol

    _print_welcome(settings, new_key)
    # httptools' protocol (h11's when httptools is missing) and uvloop's event loop when installed
    # (uvicorn's loop="auto"): cdp/api/protocol.py
    options = dict(host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                   http=serving_protocol(), loop="auto", h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    if settings.workers == 1:
        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, **options)
        return
    # the worker processes build the app from the environment (uvicorn imports it by name): the
    # command's options go there first, the demo data is loaded already
    os.environ.update({f"CDP_{name.upper()}": str(value) for name, value in (
        ("host", settings.host), ("port", settings.port), ("database_url", settings.resolved_database_url()),
        ("log_level", settings.log_level))})
    # a worker answers uvicorn's health checks only once it has imported the service, which takes
    # seconds on a loaded machine (uvicorn's default of 5 s killed them before they started)
    uvicorn.run("cdp.api.process:worker_app", factory=True, workers=settings.workers, timeout_worker_healthcheck=60,
                **options)


def _print_welcome(settings, new_key: str | None) -> None:
    """Where to go next, on stdout: the addresses and, on the first start, a ready `export KEY=…`."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    lines = [f"cdp serves {base}", f"  API docs:  {base}/docs", f"  web page:  {base}/ui"]
    if new_key:
        lines.append(f"  your admin key (shown only this once), for the examples of README.md:\n  export KEY={new_key}")
    else:
        lines.append("  the admin key was printed on the first start (lost it? `.venv/bin/cdp keys create --role admin`)")
    click.echo("\n".join(lines))


@main.command("demo")
@click.option("--url", default=None, help="Play against this running service (default: start `cdp serve` on a free "
                                          "local port, on a fresh SQLite file or --database-url).")
@click.option("--key", default=None, envvar="CDP_DEMO_KEY", help="An admin key of the service at --url (CDP_DEMO_KEY).")
@click.option("--database-url", default=None, help="The database of the service the demo starts (default: a fresh "
                                                   "SQLite file, removed after).")
@click.option("--step", "until", type=click.IntRange(1, 9), default=9, show_default=True, help="Stop after this step.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON transcript of every step instead of the story.")
@click.option("--profiles", type=click.IntRange(100, 100_000), default=1000, show_default=True,
              help="How many generated Luma customers the demo's sandbox gets before the story.")
@click.option("--no-color", is_flag=True, help="No colour (also: NO_COLOR set, or output not a terminal).")
def demo_command(url: str | None, key: str | None, database_url: str | None, until: int, as_json: bool,
                 profiles: int, no_color: bool) -> None:
    """Play the Luma story (SPEC.md, steps 1-9) through a real service, narrating what was sent,
    what cdp decided and why. Its own sandbox each time; the same story on every run."""
    from cdp.demo.narrate import use_colour
    from cdp.demo.run import run_demo

    code = run_demo(url=url, key=key, database_url=database_url, until=until, as_json=as_json, profiles=profiles,
                    colour=use_colour(sys.stdout, forced_off=no_color or as_json))
    sys.exit(code)


@main.group("keys")
def keys_group() -> None:
    """API keys of the service."""


@keys_group.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "data_steward", "marketer", "reader"]))
@click.option("--sandbox", default=None, help="Bind the key to this sandbox, which must exist (`cdp sandboxes "
                                              "create`; default: valid in every sandbox).")
@click.option("--name", default=None, help="What the key is for (default: '<role> key').")
@click.option("--database-url", default=None, help="CDP_DATABASE_URL; default: the embedded SQLite file.")
def keys_create_command(role: str, sandbox: str | None, name: str | None, database_url: str | None) -> None:
    """Create an API key and print it (only this once) on stdout."""
    from cdp.auth import Role
    from cdp.auth.service import create_key
    from cdp.errors import CdpError
    from cdp.sandboxes.service import require_sandbox
    from cdp.storage.database import write_transaction

    engine = _open_database(database_url, sandbox=sandbox)

    try:  # the write lock from the start: a read-then-write transaction fails at once under a running server
        with write_transaction(engine) as connection:
            if sandbox is not None:  # a key is bound to a sandbox that exists (`cdp sandboxes create` first)
                require_sandbox(connection=connection, name=sandbox)
            created = create_key(connection=connection, name=name or f"{role} key", role=Role(role), sandbox=sandbox)
    except CdpError as exc:
        _fail([f"{exc.code}: {exc.message}"])
    finally:
        engine.dispose()
    where = f"sandbox {sandbox!r} only" if sandbox else "every sandbox"
    click.echo(f"created {role} key {created.id} for {where}; it is shown only this once:", err=True)
    click.echo(created.key)


@main.group("sandboxes")
def sandboxes_group() -> None:
    """Sandboxes of the service: each exists before a request or a key names it (`prod` always does)."""


def _open_database(database_url: str | None, *, sandbox: str | None = None):
    """The database, migrated as `cdp serve` would; exit 1 with the reason when it cannot be opened
    or ``sandbox`` is not a valid name."""
    from cdp.api.startup import StartupError, prepare_database
    from cdp.errors import CdpError
    from cdp.sandboxes import validate_sandbox_name

    settings = _settings(database_url=database_url)
    try:
        if sandbox is not None:
            validate_sandbox_name(sandbox)
        return prepare_database(settings.resolved_database_url(), migrate=settings.migrate_on_start)
    except StartupError as exc:
        _fail([f"cannot_start: {exc}"])
    except CdpError as exc:
        _fail([f"{exc.code}: {exc.message}"])


@sandboxes_group.command("create")
@click.argument("name")
@click.option("--description", default=None, help="What the sandbox is for.")
@click.option("--database-url", default=None, help="CDP_DATABASE_URL; default: the embedded SQLite file.")
def sandboxes_create_command(name: str, description: str | None, database_url: str | None) -> None:
    """Create the sandbox NAME (1-64 lowercase letters, digits, '-' or '_', starting with a letter)."""
    from cdp.errors import CdpError
    from cdp.sandboxes import validate_sandbox_name
    from cdp.sandboxes.service import create_sandbox

    try:
        validate_sandbox_name(name)
    except CdpError as exc:
        _fail([f"{exc.code}: {exc.message}"])
    from cdp.storage.database import write_transaction

    engine = _open_database(database_url)
    try:  # the write lock from the start (SQLite): see keys create
        with write_transaction(engine) as connection:
            create_sandbox(connection=connection, name=name, description=description)
    except CdpError as exc:
        _fail([f"{exc.code}: {exc.message}"])
    finally:
        engine.dispose()
    click.echo(f"created sandbox {name}")


@sandboxes_group.command("list")
@click.option("--database-url", default=None, help="CDP_DATABASE_URL; default: the embedded SQLite file.")
def sandboxes_list_command(database_url: str | None) -> None:
    """Print the name of every sandbox, one a line."""
    from cdp.sandboxes.service import list_sandboxes

    engine = _open_database(database_url)
    try:
        with engine.connect() as connection:
            items, _total = list_sandboxes(connection=connection, limit=10**9, offset=0)
    finally:
        engine.dispose()
    for sandbox in items:
        click.echo(sandbox.name)


@main.group("segments")
def segments_group() -> None:
    """Saved segments of the service."""


@segments_group.command("run")
@click.option("--sandbox", default="prod", show_default=True, help="The sandbox whose segments to evaluate.")
@click.option("--segment", "keys", multiple=True, help="Evaluate this active segment (repeatable; default: every "
                                                       "active segment). The active segments it uses come along.")
@click.option("--database-url", default=None, help="CDP_DATABASE_URL; default: the embedded SQLite file.")
@click.option("--engine", "on", type=click.Choice(["database", "duckdb", "spark"]), default="database",
              show_default=True, help="Where the members are computed: the database, or DuckDB or Spark over the "
                                      "sandbox's latest snapshot (cdp snapshot); memberships are written back alike.")
@click.option("--master", default=None, help="With --engine spark: the Spark master URL (spark://host:7077, yarn, "
                                             "k8s://…; default: CDP_SPARK_MASTER, else local[*]).")
@click.option("--snapshots", "snapshot_dir", default=None, help="Folder of the snapshots (default: <CDP_DATA_DIR>/snapshots).")
def segments_run_command(sandbox: str, keys: tuple[str, ...], database_url: str | None, on: str,
                         master: str | None, snapshot_dir: str | None) -> None:
    """Run a batch evaluation now and print the job (counts per segment) as JSON. Exit 1 when it
    cannot start or fails."""
    from cdp.errors import CdpError
    from cdp.segments.jobs import create_job, run_job
    from cdp.storage.database import write_transaction

    if master is not None and on != "spark":
        _fail(["invalid_argument: --master goes with --engine spark"])
    settings = _settings(database_url=database_url)
    engine = _open_database(database_url, sandbox=sandbox)
    try:
        with write_transaction(engine) as connection:
            job = create_job(connection=connection, sandbox=sandbox, keys=list(keys) or None, requested_by="cli")
        done = run_job(engine, job.id, on=on, snapshots=snapshot_dir or settings.data_dir / "snapshots",
                       master=master)
    except CdpError as exc:
        _fail([f"{exc.code}: {exc.message}"])
    finally:
        engine.dispose()
    click.echo(done.model_dump_json())
    if done.status.value != "succeeded":
        _fail([f"segment_job_failed: {done.message}"])


@main.command("snapshot")
@click.option("--sandbox", default="prod", show_default=True, help="The sandbox to export.")
@click.option("--full", is_flag=True, help="Export everything (a compaction) rather than what changed since the last.")
@click.option("--snapshots", "snapshot_dir", default=None, help="Folder of the snapshots (default: <CDP_DATA_DIR>/snapshots).")
@click.option("--database-url", default=None, help="CDP_DATABASE_URL; default: the embedded SQLite file.")
def snapshot_command(sandbox: str, full: bool, snapshot_dir: str | None, database_url: str | None) -> None:
    """Export the sandbox's profiles and events to Parquet (incremental) and print the manifest as
    JSON: what `cdp segments run --engine duckdb|spark` reads."""
    settings = _settings(database_url=database_url)
    engine = _open_database(database_url, sandbox=sandbox)
    try:
        from cdp.snapshots import export_snapshot

        with engine.connect() as connection:
            manifest = export_snapshot(connection, sandbox=sandbox, full=full,
                                       root=snapshot_dir or settings.data_dir / "snapshots")
    except ImportError as exc:
        _fail([f"missing_driver: {exc}; pip install 'cdp[analytics]'"])
    finally:
        engine.dispose()
    click.echo(json.dumps(manifest.to_dict()))


if __name__ == "__main__":  # pragma: no cover
    main()
