"""Run the Alembic migrations programmatically (``backprop migrate`` / ``serve``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic.config import Config

from alembic import command

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


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
