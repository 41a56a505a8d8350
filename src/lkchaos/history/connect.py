"""Where the history is, how to reach it, and its schema brought to the newest revision.

- :func:`resolve_url`: the ``url`` given, else ``$LKCHAOS_HISTORY_URL``, else
  ``sqlite:///<state dir>/history.sqlite``; ``postgresql://`` (and ``postgres://``) URLs are
  mapped to the psycopg 3 driver (``postgresql+psycopg://``).
- :func:`mask_url`: the URL with its password replaced by ``***``, for every message.
- :func:`connect`: an engine with explicit timeouts (PostgreSQL ``connect_timeout`` 10 s,
  SQLite busy timeout 30 s), checked by a first connection, and migrated to head.
- :func:`migrate`: Alembic ``upgrade head`` on one connection, in one transaction; on
  PostgreSQL that transaction first takes an advisory lock, so concurrent openers upgrade one
  after the other; on SQLite an exclusive ``flock`` on ``<file>.lock`` does the same (each
  wait bounded to 60 s). A database at a revision this lkchaos does not know (written by a
  newer lkchaos) is refused. A database already at head is seen so by one query of the
  version table, without Alembic (importing it costs about 0.3 s of CPU, in every ``chaos
  run`` that records its run).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.history.schema import HEAD_REVISION, VERSION_TABLE

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

ENV_URL = "LKCHAOS_HISTORY_URL"
CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_S = 30.0
#: pg_advisory_xact_lock key serialising history migrations ("lkchaos" in ASCII, as an int).
ADVISORY_LOCK_KEY = 0x6C6B6368616F73
MIGRATION_LOCK_TIMEOUT_S = 60.0
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Alembic's context is process-global: one migration at a time in this process.
_IN_PROCESS = threading.Lock()

_PASSWORD = re.compile(r"(?P<head>://[^:/@]*:)(?P<password>[^@]*)@")


#: The default history's file in the state folder.
SQLITE_FILE = "history.sqlite"


def default_url() -> str:
    """``sqlite:///<state dir>/history.sqlite`` (the state dir of ``Settings.load()``)."""
    from lkchaos.settings import Settings

    return f"sqlite:///{Path(Settings.load().state_dir) / SQLITE_FILE}"


def history_exists(state_dir: str) -> bool:
    """Whether there is a history to record into: ``$LKCHAOS_HISTORY_URL`` is set, or the
    default SQLite file exists in ``state_dir`` (what ``lkchaos validate`` and ``lkchaos
    load`` record into unless told otherwise)."""
    return bool(os.environ.get(ENV_URL)) or (Path(state_dir) / SQLITE_FILE).is_file()


def resolve_url(url: str | None = None) -> str:
    """The SQLAlchemy URL to use: ``url``, else ``$LKCHAOS_HISTORY_URL``, else the default;
    ``postgresql://`` becomes ``postgresql+psycopg://``. Raises ``ConfigError`` on an empty
    or unparsable URL."""
    chosen = url if url is not None else (os.environ.get(ENV_URL) or default_url())
    chosen = chosen.strip()
    if not chosen:
        raise ConfigError(f"the history URL is empty: give a URL or unset {ENV_URL}")
    for prefix in ("postgresql://", "postgres://"):
        if chosen.startswith(prefix):
            chosen = "postgresql+psycopg://" + chosen[len(prefix):]
    try:
        parsed = make_url(chosen)
    except ArgumentError as exc:
        raise ConfigError(
            f"the history URL {mask_url(chosen)!r} cannot be parsed: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"the history URL {mask_url(chosen)!r} names {parsed.get_backend_name()!r}: only "
            "sqlite:///PATH and postgresql://... are supported"
        )
    return chosen


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also for URLs that do not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\g<head>***@", url)


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message (never SQLAlchemy's background link)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def create(url: str) -> Engine:
    """An engine for a resolved URL, with explicit timeouts (nothing is connected yet)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LkChaosError(
                    f"cannot create the folder of the history database {mask_url(url)}: "
                    f"{exc}; set {ENV_URL} to a writable place"
                ) from exc
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    """The newest revision this lkchaos knows."""
    head = _script().get_current_head()
    assert head is not None, "the history has no migration"
    return head


def current_revision(connection: Connection) -> str | None:
    """The database's revision (None for a database the history never touched)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextmanager
def _sqlite_file_lock(engine: Engine, masked: str) -> Iterator[None]:
    """An exclusive lock on ``<database>.lock`` while migrating a SQLite file, for other
    processes opening the same new file (waits up to ``MIGRATION_LOCK_TIMEOUT_S``)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        yield
        return
    with open(f"{Path(database).expanduser()}.lock", "a") as handle:
        deadline = time.monotonic() + MIGRATION_LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LkChaosError(
                        f"another process has been migrating the history {masked} for "
                        f"{MIGRATION_LOCK_TIMEOUT_S:g} s; try again, or remove "
                        f"{handle.name} if no lkchaos is running") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine, masked: str) -> None:
    """Upgrade the database to head, serialised (see the module docstring). Raises
    ``LkChaosError`` for a database written by a newer lkchaos."""
    if _at_head(engine):
        return
    with _IN_PROCESS, _sqlite_file_lock(engine, masked):
        _migrate(engine, masked)


def _at_head(engine: Engine) -> bool:
    """Whether the database is at :data:`HEAD_REVISION` already, read without Alembic. A
    database that cannot be reached raises (SQLAlchemy's error); one without a version table
    yet (new) is not at head."""
    with engine.connect() as connection:
        try:
            found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        except SQLAlchemyError:
            return False
    return [row[0] for row in found] == [HEAD_REVISION]


def _migrate(engine: Engine, masked: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")  # versions: <script_location>/versions
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # lock_timeout bounds the wait for another opener's migration.
            connection.execute(text(
                f"SET LOCAL lock_timeout = '{int(MIGRATION_LOCK_TIMEOUT_S * 1000)}ms'"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": ADVISORY_LOCK_KEY})  # fmt: skip
        found = current_revision(connection)
        script = _script()
        if found is not None and found not in {rev.revision for rev in script.walk_revisions()}:
            raise LkChaosError(
                f"the history database {masked} is at schema revision {found!r}, which this "
                f"lkchaos does not know (newest known: {head_revision()!r}): it was written by "
                f"a newer lkchaos. Upgrade lkchaos, or set {ENV_URL} to another database"
            )
        if found == script.get_current_head():
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _missing_sqlite(url: str) -> Path | None:
    """The absolute path of a SQLite URL's database file when that file does not exist."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):  # fmt: skip
        return None
    path = Path(database).expanduser().absolute()
    return None if path.exists() else path


def connect(url: str | None = None, *, existing: bool = False) -> tuple[Engine, str]:
    """Resolve, connect, migrate. Returns the engine and the masked URL. Raises
    ``ConfigError`` for a bad URL, ``LkChaosError`` when the database cannot be reached or
    migrated (the message names the masked URL and what to do).

    ``existing`` (for commands that only read): a SQLite file named by ``url`` or
    ``$LKCHAOS_HISTORY_URL`` that does not exist is a ``ConfigError`` (a mistyped URL),
    never a new, empty database."""
    resolved = resolve_url(url)
    masked = mask_url(resolved)
    explicit = url is not None or bool(os.environ.get(ENV_URL))
    missing = _missing_sqlite(resolved) if existing and explicit else None
    if missing is not None:
        relative = "" if resolved.startswith("sqlite:////") else (
            " (sqlite:/// with three slashes is relative to the current folder; an absolute "
            "path takes four: sqlite:////srv/lkchaos/history.sqlite)")
        raise ConfigError(f"no run history at {missing}: nothing was recorded there. Check "
                          f"the URL {masked}{relative}")
    engine = create(resolved)
    try:
        migrate(engine, masked)
    except LkChaosError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise LkChaosError(
            f"cannot open the run history at {masked}: {_reason(exc)}. Check that the "
            f"database is running and reachable, and the URL (${ENV_URL}, or the url given)"
        ) from exc
    return engine, masked


def insert_all(url: str | None, what: str, rows: Sequence[tuple[Table, list[dict[str, Any]]]]
               ) -> None:  # fmt: skip
    """Insert each table's rows into the history at ``url``, in one transaction. Raises
    LkChaosError naming the (masked) database and ``what`` was being recorded."""
    from sqlalchemy import insert

    engine, masked = connect(url)
    try:
        with engine.begin() as conn:
            for table, values in rows:
                if values:
                    conn.execute(insert(table), values)
    except SQLAlchemyError as exc:
        raise LkChaosError(f"the run history at {masked} failed while recording {what}: "
                           f"{_reason(exc)}; check that the database is up") from exc
    finally:
        engine.dispose()
