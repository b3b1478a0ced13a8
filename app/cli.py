"""The ``backprop`` command: ``serve``, ``migrate``, ``worker``, and the client commands
``train``, ``runs``, ``predict`` (in :mod:`app.client_cli`)."""

from __future__ import annotations

import argparse
import logging
import sys

from app.client_cli import add_client_commands, run_client_command
from app.config import get_settings

logger = logging.getLogger("backprop")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def _serve(host: str, port: int) -> int:
    import uvicorn

    from app.jobs.dispatch import CELERY_NOT_READY
    from app.main import create_app
    from app.migrations import migrate

    settings = get_settings()
    if settings.broker_url:
        logger.error(CELERY_NOT_READY)
        return 2
    migrate(settings.database_url)
    logger.info("serving on http://%s:%d (docs at /docs)", host, port)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    return 0


def _migrate() -> int:
    from app.migrations import migrate

    migrate(get_settings().database_url)
    return 0


def _worker() -> int:
    settings = get_settings()
    if not settings.broker_url:
        logger.error(
            "`backprop worker` is a Celery worker and needs BACKPROP_BROKER_URL "
            "(e.g. redis://localhost:6379/0). Without a broker, `backprop serve` runs "
            "BACKPROP_WORKERS local worker processes itself."
        )
    else:
        logger.error("the Celery worker is not implemented yet (it arrives with the Celery issue)")
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="backprop", description="Backprop training service.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate the database, then serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    sub.add_parser("migrate", help="upgrade the database schema")
    sub.add_parser("worker", help="run a Celery worker (needs BACKPROP_BROKER_URL)")
    add_client_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``backprop`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "client_command", None) is not None:
        return run_client_command(args)  # talks to a server: no server logging set up
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.command == "serve":
        return _serve(args.host, args.port)
    if args.command == "migrate":
        return _migrate()
    return _worker()


if __name__ == "__main__":
    sys.exit(main())
