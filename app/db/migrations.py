"""Run the Alembic migrations programmatically (``backprop migrate`` / ``serve``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url`` using the project's ``alembic/`` scripts."""
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str) -> None:
    """Upgrade the database at ``database_url`` to the latest schema."""
    logger.info("migrating the database to the latest schema")
    command.upgrade(alembic_config(database_url), "head")


def head_revision() -> str:
    """The latest revision of the project's migrations."""
    script = ScriptDirectory.from_config(alembic_config(""))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the project always has migrations
        raise RuntimeError("no Alembic migrations found")
    return head


def current_revision(database_url: str) -> str | None:
    """The revision the database at ``database_url`` is at (None: not migrated).

    Reads ``alembic_version`` directly (no Alembic context, so nothing is logged
    on every poll of :func:`wait_for_schema`).
    """
    from sqlalchemy import inspect, text

    from app.db.database import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            return str(rows[0][0]) if len(rows) == 1 else None
    finally:
        engine.dispose()


def wait_for_schema(
    database_url: str, *, timeout: float, interval: float = 1.0, log_every: float = 10.0
) -> bool:
    """Wait until the database answers and its schema is at the latest revision.

    Only the API (``backprop serve`` / ``backprop migrate``) migrates; workers call
    this instead, so that several machines never race to upgrade one schema.

    Returns
    -------
    bool
        True once the schema is at head; False after ``timeout`` seconds.
    """
    head = head_revision()
    deadline = time.monotonic() + timeout
    next_log = time.monotonic()
    while True:
        try:
            current: str | None = current_revision(database_url)
            problem = f"schema at revision {current!r}, waiting for {head!r}"
        except Exception as exc:  # the database is not up yet
            current = None
            problem = f"database not reachable ({type(exc).__name__}: {exc})"
        if current == head:
            return True
        now = time.monotonic()
        if now >= deadline:
            logger.error("%s; gave up after %.0f s (run `backprop migrate`)", problem, timeout)
            return False
        if now >= next_log:
            logger.info("%s (the API migrates on start)", problem)
            next_log = now + log_every
        time.sleep(min(interval, max(deadline - now, 0.0)))
