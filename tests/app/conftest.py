"""tests/app runs every test on SQLite and on PostgreSQL (``[sqlite]`` / ``[postgresql]``)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database of each backend for this test."""
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('db_path')}"
    url: str = request.getfixturevalue("postgres_url")
    return url
