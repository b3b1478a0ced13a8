"""The server's commands of ``backprop``: ``serve``, ``migrate``, ``worker``.

The command itself is :mod:`backprop_client.cli` (``train``, ``runs``, ``predict``);
this module plugs the server commands into it through the entry point group
``backprop_client.commands``, so an environment has one ``backprop``."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import click
from backprop_client import cli as client_cli

from app.config import Settings, get_settings
from app.logs import configure_logging

if TYPE_CHECKING:
    from starlette.types import ASGIApp
    from uvicorn import Config

logger = logging.getLogger("backprop")

PRELOADED = ("pyarrow.compute", "pyarrow.csv", "pyarrow.ipc", "pyarrow.parquet")
"""Modules the dataset readers import on first use, imported before serving instead:
their shared libraries (~30 MiB of mapped pages) are then part of the server's
baseline, not a residue of its first CSV or Parquet upload (issue 10's RSS-after
goal), and that upload does not wait for them."""

SERVER_SWITCH_INTERVAL = 0.0005
"""Seconds a thread holding the GIL runs before another waiting thread gets it, in
``backprop serve`` (Python's default is 5 ms). Parsing a large body in a worker thread
keeps the GIL busy; the event loop gives it up at every socket call and waits a whole
interval to get it back each time: one ``/healthz`` took up to 1.5 s during a 56 MiB
JSON upload at 5 ms, 0.09 s at 0.5 ms, and 0.03 s once startup's objects are also
frozen out of the full collections (``gc.freeze``; docs/DECISIONS.md)."""


def _serve(host: str, port: int) -> int:
    import uvicorn

    from app.blas import limit_blas_threads
    from app.db.migrations import migrate
    from app.edge.route_tables import build_route_tables
    from app.jobs.dispatch import ExecutorUnavailableError, check_broker_url
    from app.main import create_app
    from app.memory import map_large_allocations

    settings = get_settings()
    if settings.broker_url:
        try:
            check_broker_url(settings.broker_url)
        except ExecutorUnavailableError as exc:
            logger.error("%s", exc)
            return 2
    migrate(settings.database_url)
    map_large_allocations()  # freed arrays of 1 MiB or more leave the server (app.memory)
    limit_blas_threads(settings.server_blas_threads)  # cores left for the loop (app.blas)
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL)
    logger.info("serving on http://%s:%d (docs at /docs)", host, port)
    app = create_app(settings)
    build_route_tables(app)
    config = uvicorn_config(app, settings, host, port)
    for module in PRELOADED:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # startup's objects live as long as the server: full collections skip them
    uvicorn.Server(config).run()
    return 0


def uvicorn_config(app: ASGIApp, settings: Settings, host: str, port: int) -> Config:
    """The uvicorn configuration of ``backprop serve``: every server-level setting in one place.

    - h11 with a deadline for request heads (``BACKPROP_HEADER_TIMEOUT_SECONDS``,
      :mod:`app.edge.http_protocol`); uvicorn's own keep-alive timeout (5 s) is kept.
    - On SIGTERM, open requests and streams get ``BACKPROP_SHUTDOWN_SECONDS`` to
      finish; then uvicorn closes them and exits.
    - Requests are logged by :mod:`app.edge.observability` (one line each, JSON or text),
      so uvicorn's access log is off and its loggers go through ours (no log config).

    Parameters
    ----------
    app : ASGI app
        The app to serve (:func:`app.main.create_app`).
    settings : Settings
        The service's settings.
    host, port : str, int
        Where to listen.

    Returns
    -------
    uvicorn.Config
        For ``uvicorn.Server(config).run()``.
    """
    from uvicorn import Config

    from app.edge.http_protocol import protocol_with_head_timeout

    return Config(
        app,
        host=host,
        port=port,
        http=protocol_with_head_timeout(settings.header_timeout_seconds),
        timeout_graceful_shutdown=settings.shutdown_seconds,
        log_config=None,
        access_log=False,
    )


def _migrate() -> int:
    from app.db.migrations import migrate

    migrate(get_settings().database_url)
    return 0


def _worker(concurrency: int | None, hostname: str | None) -> int:
    from app.jobs.dispatch import ExecutorUnavailableError, check_broker_url

    settings = get_settings()
    if not settings.broker_url:
        logger.error(
            "`backprop worker` is a Celery worker and needs BACKPROP_BROKER_URL "
            "(e.g. redis://localhost:6379/0). Without a broker, `backprop serve` runs "
            "BACKPROP_WORKERS local worker processes itself."
        )
        return 2
    try:
        check_broker_url(settings.broker_url)
    except ExecutorUnavailableError as exc:
        logger.error("%s", exc)
        return 2
    from app.db.migrations import wait_for_schema

    if not wait_for_schema(settings.database_url, timeout=settings.schema_wait_seconds):
        return 1
    from app.jobs.celery_app import connect_worker_signals, make_celery, worker_argv

    processes = concurrency or settings.workers or 1
    connect_worker_signals(settings)
    app = make_celery(settings)
    argv = worker_argv(
        concurrency=processes,
        hostname=hostname or f"backprop-{os.getpid()}@%h",
        quiet=settings.log_format == "json",
    )
    logger.info("starting a Celery worker with %d process(es)", processes)
    app.worker_main(argv=argv)
    return 0


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve_command(host: str, port: int) -> int:
    """Migrate the database, then serve the API (and the dashboard at /)."""
    configure_logging(get_settings().log_format, background=True)
    return _serve(host, port)


@click.command("migrate")
def migrate_command() -> int:
    """Upgrade the database schema (BACKPROP_DATABASE_URL) to the newest revision."""
    configure_logging(get_settings().log_format)
    return _migrate()


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Training processes (default: BACKPROP_WORKERS, i.e. the CPU count).",
)
@click.option("--hostname", default=None, help="Celery node name (default: backprop-<pid>@<host>).")
def worker_command(concurrency: int | None, hostname: str | None) -> int:
    """Run a Celery worker (needs BACKPROP_BROKER_URL; waits for the schema)."""
    configure_logging(get_settings().log_format)
    return _worker(concurrency, hostname)


def register(group: click.Group) -> None:
    """Add ``serve``, ``migrate`` and ``worker`` to the ``backprop`` command of
    :mod:`backprop_client.cli` (the entry point ``backprop_client.commands: server``)."""
    for command in (serve_command, migrate_command, worker_command):
        group.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """The ``backprop`` command with the server commands, whatever entry points are installed."""
    return client_cli.main(argv, plugins=[register])


if __name__ == "__main__":
    sys.exit(main())
