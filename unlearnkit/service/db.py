"""The ledger's tables (SQLAlchemy 2), its engine, and its migrations (Alembic).

One ledger is a database (a SQLite file by default, or a PostgreSQL server by URL) plus a
folder of files (model weights, training index sets, reports) that its rows point into by
relative path. Every write is one transaction that also appends to the audit chain
(`service.chain`), so a row never changes without a log entry that covers its content.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from unlearnkit.errors import UnlearnkitError

LEDGER_ENV = "UNLEARNKIT_LEDGER"
LEDGER_DIR_ENV = "UNLEARNKIT_LEDGER_DIR"
MIGRATIONS = Path(__file__).parent / "migrations"
FILE_MODE, FOLDER_MODE = 0o600, 0o700  # the ledger holds personal data: its owner's alone
HEAD_REVISION = "0003"  # the newest file in migrations/versions


def now() -> str:
    """UTC time as ISO 8601 with microseconds: one fixed format, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(400))  # weights, relative to the ledger folder
    spec: Mapped[dict]  # how to rebuild the architecture (the sidecar's "model")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    kind: Mapped[str] = mapped_column(String(20))  # trained | unlearned | retrained | deleted-exactly (served from a SISA ensemble)
    method: Mapped[str | None] = mapped_column(String(60))
    config: Mapped[dict | None]  # a SISA ensemble's: {"sisa": {shards, slices, aggregate, seed, checkpoints}, …}
    data: Mapped[str] = mapped_column(String(400))  # where the training data is read
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    train_ids_path: Mapped[str] = mapped_column(String(400))  # .npy of sorted training indices
    train_ids_sha256: Mapped[str] = mapped_column(String(64))
    train_count: Mapped[int] = mapped_column(Integer)
    excluded_subjects: Mapped[list]  # subjects whose images this version was made without
    verdict: Mapped[str | None] = mapped_column(String(10))  # pass | fail (unlearned versions)
    created: Mapped[str] = mapped_column(String(40))
    purged: Mapped[str | None] = mapped_column(String(40))  # when its files were deleted (it held forgotten data)


class Subject(Base):
    __tablename__ = "subjects"
    subject_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    sample_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class Request(Base):
    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the client's request id
    subjects: Mapped[list]
    sample_ids: Mapped[list]  # resolved at submission, sorted
    received: Mapped[str] = mapped_column(String(40), index=True)
    deadline: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    action_id: Mapped[int | None] = mapped_column(ForeignKey("actions.id"))
    served: Mapped[str | None] = mapped_column(String(40))
    submitted_by: Mapped[str | None] = mapped_column(String(200))  # the API token's name, for a submitter's own view
    error: Mapped[str | None] = mapped_column(String(500))  # status `failed`: why its batch raised


class Action(Base):
    __tablename__ = "actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # unlearn | retrain | noop
    status: Mapped[str] = mapped_column(String(20))  # running | done | abandoned | failed
    holder: Mapped[str] = mapped_column(String(200))  # host:pid of the process doing it
    requests: Mapped[list]
    input_version: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    output_version: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    method: Mapped[str | None] = mapped_column(String(60))
    config: Mapped[dict | None]
    started: Mapped[str] = mapped_column(String(40))
    finished: Mapped[str | None] = mapped_column(String(40))
    seconds: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[dict | None]
    report_path: Mapped[str | None] = mapped_column(String(400))
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(500))  # status `failed`: the exception, one line


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[str] = mapped_column(String(40))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[str | None] = mapped_column(String(10))  # submit | read | admin (None: made before scopes, admin)


class State(Base):
    """Named values: the deployed version, the serving lease, the chain's head."""

    __tablename__ = "state"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LogEntry(Base):
    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(60))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON
    payload_sha256: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


LATER_COLUMNS = {"purged", "submitted_by", "scope"}  # added by migration 0002


def row_values(row) -> dict:
    """The row's columns, without a column added after the first schema while it is empty: rows
    written before it keep the digests their audit entries recorded."""
    values = {column.key: getattr(row, column.key) for column in inspect(type(row)).mapper.column_attrs}
    return {key: value for key, value in values.items() if value is not None or key not in LATER_COLUMNS}


def default_location() -> str:
    from unlearnkit.data import cache_dir

    return os.environ.get(LEDGER_ENV) or str(cache_dir() / "ledger" / "ledger.db")


def is_url(location: str) -> bool:
    return "://" in location


def database_url(location: str) -> str:
    if location.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + location.split("://", 1)[1]
    if is_url(location):
        return location
    return f"sqlite:///{Path(location).expanduser().resolve()}"


def files_folder(location: str) -> Path:
    """Where the ledger's files live: beside a SQLite file (LEDGER.db → LEDGER.files/), or
    $UNLEARNKIT_LEDGER_DIR (default: the cache's ledger-files/) for a server."""
    if env := os.environ.get(LEDGER_DIR_ENV):
        return Path(env).expanduser().resolve()
    if is_url(location) and not location.startswith("sqlite"):
        from unlearnkit.data import cache_dir

        return cache_dir() / "ledger-files"
    path = Path(location.removeprefix("sqlite:///")).expanduser().resolve()
    return path.with_name(path.stem + ".files")


def make_engine(location: str) -> Engine:
    url = database_url(location)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(connection, _record):
            connection.isolation_level = None  # transactions are begun below, not by the driver
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):
            # a writing transaction takes the write lock up front: two writers never both read
            # the same pending requests or the same chain head and then both write
            connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")

        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as error:
        raise UnlearnkitError(f"ledger {location}: the driver {error.name} is missing; install unlearnkit[service]") from None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (Alembic), idempotently."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def sessions(engine: Engine, read_only: bool = False) -> sessionmaker:
    """Sessions that write, or that only read. A reading session sees one snapshot of the ledger:
    SQLite's read transaction does; PostgreSQL's default (READ COMMITTED) takes a new snapshot per
    statement, so a reader checking the audit chain against the tables could see an action that
    another process committed between two of its statements, without its audit entry."""
    if not read_only:
        return sessionmaker(engine, expire_on_commit=False)
    options = {"read_only": True} | ({"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {})
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False)
