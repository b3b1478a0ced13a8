"""The ``backprop`` command: ``serve``, ``migrate``, ``worker``, and the client commands
``train``, ``runs``, ``predict`` (in :mod:`app.client_cli`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from app.client_cli import add_client_commands, run_client_command
from app.config import Settings, get_settings
from app.logs import configure_logging

if TYPE_CHECKING:
    from starlette.types import ASGIApp
    from uvicorn import Config

logger = logging.getLogger("backprop")


def _serve(host: str, port: int) -> int:
    import uvicorn

    from app.jobs.dispatch import ExecutorUnavailableError, check_broker_url
    from app.main import create_app
    from app.migrations import migrate

    settings = get_settings()
    if settings.broker_url:
        try:
            check_broker_url(settings.broker_url)
        except ExecutorUnavailableError as exc:
            logger.error("%s", exc)
            return 2
    migrate(settings.database_url)
    logger.info("serving on http://%s:%d (docs at /docs)", host, port)
    uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port)).run()
    return 0


def uvicorn_config(app: ASGIApp, settings: Settings, host: str, port: int) -> Config:
    """The uvicorn configuration of ``backprop serve``: every server-level setting in one place.

    - h11 with a deadline for request heads (``BACKPROP_HEADER_TIMEOUT_SECONDS``,
      :mod:`app.http_protocol`); uvicorn's own keep-alive timeout (5 s) is kept.
    - On SIGTERM, open requests and streams get ``BACKPROP_SHUTDOWN_SECONDS`` to
      finish; then uvicorn closes them and exits.
    - Requests are logged by :mod:`app.observability` (one line each, JSON or text),
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

    from app.http_protocol import protocol_with_head_timeout

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
    from app.migrations import migrate

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
    from app.migrations import wait_for_schema

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


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="backprop", description="Backprop training service.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate the database, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    sub.add_parser("migrate", help="upgrade the database schema")
    worker = sub.add_parser(
        "worker", help="run a Celery worker (needs BACKPROP_BROKER_URL; waits for the schema)"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="training processes (default: BACKPROP_WORKERS, i.e. the CPU count)",
    )
    worker.add_argument(
        "--hostname", default=None, help="Celery node name (default: backprop-<pid>@<host>)"
    )
    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``backprop`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "client_command", None) is not None:
        return run_client_command(args)  # talks to a server: no server logging set up
    configure_logging(get_settings().log_format)
    if args.command == "serve":
        return _serve(args.host, args.port)
    if args.command == "migrate":
        return _migrate()
    return _worker(args.concurrency, args.hostname)


if __name__ == "__main__":
    sys.exit(main())
