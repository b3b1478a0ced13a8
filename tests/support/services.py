"""Throwaway PostgreSQL and Redis servers for tests and benchmarks.

``BACKPROP_TEST_POSTGRES_URL`` / ``BACKPROP_TEST_REDIS_URL`` name servers that are
already running (CI starts them in ``.ci/run``). Otherwise :func:`start_postgres`
and :func:`start_redis` start private ones on free loopback ports in a temporary
directory, from the Debian binaries (``/usr/lib/postgresql/*/bin``,
``redis-server``), and :class:`ServiceUnavailableError` says why when they cannot.
PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_URL_ENV = "BACKPROP_TEST_POSTGRES_URL"
REDIS_URL_ENV = "BACKPROP_TEST_REDIS_URL"
REQUIRE_ENV = "BACKPROP_REQUIRE_SERVICES"


class ServiceUnavailableError(RuntimeError):
    """A test service cannot be started here (the message says why)."""


def services_required() -> bool:
    """True when a missing service must fail the tests instead of skipping them."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (SQLAlchemy with psycopg 3)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…`` (psycopg.connect)."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://") :]


def database_name(url: str) -> str:
    """The database name in a PostgreSQL URL (a bare name is returned as it is)."""
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    base, _, rest = libpq_url(url).partition("://")
    authority, _, path = rest.partition("/")
    query = ""
    if "?" in path:
        query = "?" + path.split("?", 1)[1]
    return f"{base}://{authority}/{name}{query}"


@dataclass
class PostgresServer:
    """A PostgreSQL server we may create and drop databases on.

    ``url`` is a libpq URL of a maintenance database (``postgresql://…/postgres``).
    """

    url: str
    data_dir: Path | None = None
    bindir: Path | None = None
    run_as: str | None = None
    options: str = ""
    _created: list[str] = field(default_factory=list)

    def _pg_ctl(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        if self.data_dir is None or self.bindir is None:
            raise ServiceUnavailableError("this PostgreSQL server was not started by the tests")
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *arguments]
        return subprocess.run(
            [*_as_user(self.run_as), *command], capture_output=True, text=True, timeout=120
        )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected); see :meth:`resume`."""
        done = self._pg_ctl("-m", mode, "-w", "-t", "60", "stop")
        if done.returncode != 0:
            raise ServiceUnavailableError(f"pg_ctl stop failed: {done.stderr.strip()}")

    def resume(self) -> None:
        """Start the server again on the same port and data directory."""
        assert self.data_dir is not None
        log = self.data_dir.parent / "postgres.log"
        done = self._pg_ctl("-l", str(log), "-o", self.options, "-w", "-t", "60", "start")
        if done.returncode != 0:
            raise ServiceUnavailableError(f"pg_ctl start failed: {done.stderr.strip()}")
        _wait_for_postgres(self.url, 30)

    def set_read_only(self, read_only: bool, timeout: float = 30) -> None:
        """Make every new transaction read-only (or writable again), as a failover to a
        standby would; sessions already open pick the setting up at their next command.

        ``pg_reload_conf()`` only signals the postmaster, which re-reads the file and
        signals every backend when it is next scheduled: this returns once a new
        session sees the setting, so the postmaster has passed it on to the open ones.
        """
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            if read_only:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")
        wanted = "on" if read_only else "off"
        deadline = time.monotonic() + timeout
        while self._setting("default_transaction_read_only") != wanted:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"default_transaction_read_only is not {wanted} {timeout} s after the reload"
                )
            time.sleep(0.02)

    def _setting(self, name: str) -> str:
        """``SHOW name`` in a new session."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(f"SHOW {name}").fetchone()
        assert row is not None
        return str(row[0])

    def create_database(self, template: str | None = None, prefix: str = "bp") -> str:
        """Create a database (optionally from ``template``); return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            conn.execute(statement)
        self._created.append(name)
        return sqlalchemy_url(with_database(self.url, name))

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database made by :meth:`create_database` (connections are cut)."""
        import psycopg
        from psycopg import sql

        name = database_name(url_or_name)
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        with contextlib.suppress(ValueError):
            self._created.remove(name)

    def stop(self) -> None:
        """Drop what we created; stop and delete the server if we started it."""
        for name in list(self._created):
            with contextlib.suppress(Exception):
                self.drop_database(name)
        if self.data_dir is None or self.bindir is None:
            return
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate"]
        subprocess.run([*_as_user(self.run_as), *command, "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _as_user(user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--"] if user else []


def _wait_for_postgres(url: str, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"PostgreSQL at {url} does not answer: {exc}"
                ) from exc
            time.sleep(0.1)


def start_postgres(*, private: bool = False) -> PostgresServer:
    """Use ``BACKPROP_TEST_POSTGRES_URL`` or start a private PostgreSQL server.

    ``private=True`` always starts one (a test that stops and restarts it).
    """
    given = None if private else os.environ.get(POSTGRES_URL_ENV)
    if given:
        url = libpq_url(given)
        _wait_for_postgres(url, 10)
        return PostgresServer(url=url)
    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        raise ServiceUnavailableError(
            "PostgreSQL binaries (initdb, pg_ctl) not found: install the Debian package "
            f"`postgresql`, or set {POSTGRES_URL_ENV}"
        )
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceUnavailableError(
                "running as root and there is no `postgres` user to run PostgreSQL as"
            ) from exc
        if shutil.which("runuser") is None:
            raise ServiceUnavailableError("running as root and `runuser` is missing")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="backprop-pg-"))
    data = root / "data"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    as_user = _as_user(run_as)
    initdb = subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "backprop",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceUnavailableError(f"initdb failed: {initdb.stderr.strip()[-500:]}")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    started = subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        log = (root / "postgres.log").read_text(errors="replace") if root.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceUnavailableError(f"pg_ctl start failed: {started.stderr.strip()} {log[-500:]}")
    url = f"postgresql://backprop@127.0.0.1:{port}/postgres"
    server = PostgresServer(url=url, data_dir=data, bindir=bindir, run_as=run_as, options=options)
    try:
        _wait_for_postgres(url, 30)
    except ServiceUnavailableError:
        server.stop()
        raise
    return server


@dataclass
class RedisServer:
    """A Redis server; ``url`` names database 0."""

    url: str
    process_dir: Path | None = None
    port: int | None = None
    argv: list[str] = field(default_factory=list)
    _next_db: int = 0

    def halt(self) -> None:
        """Shut the server down without saving: every message it held is lost."""
        import redis

        assert self.process_dir is not None, "this Redis server was not started by the tests"
        client = redis.Redis.from_url(self.url)
        with contextlib.suppress(redis.ConnectionError):  # the connection closes on shutdown
            client.shutdown(nosave=True)
        client.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", int(self.port or 0))) != 0:
                    return
            time.sleep(0.05)
        raise ServiceUnavailableError("redis-server did not shut down")

    def resume(self) -> None:
        """Start the server again on the same port (empty)."""
        started = subprocess.run(self.argv, capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            raise ServiceUnavailableError(f"redis-server failed: {started.stderr.strip()}")
        _wait_for_redis(self.url, 15)

    def database_url(self) -> str:
        """A URL of a fresh (flushed) logical database, cycling through this test
        process's share of 1..15 (pytest-xdist workers get disjoint shares)."""
        import redis

        first, count = redis_databases()
        index = first + self._next_db % count
        self._next_db += 1
        url = self.url.rsplit("/", 1)[0] + f"/{index}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url

    def stop(self) -> None:
        """Shut the server down if we started it."""
        if self.process_dir is None:
            return
        import redis

        client = redis.Redis.from_url(self.url)
        with contextlib.suppress(Exception):
            client.shutdown(nosave=True)
        client.close()
        shutil.rmtree(self.process_dir, ignore_errors=True)


def redis_databases() -> tuple[int, int]:
    """The first logical Redis database this process may flush, and how many (of 1..15).

    Without pytest-xdist: all 15. Worker ``gwN`` of ``W`` (``PYTEST_XDIST_WORKER``,
    ``PYTEST_XDIST_WORKER_COUNT``) gets its own block, so no worker flushes another's.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or workers <= 1:
        return 1, 15
    count = max(1, 15 // workers)
    return 1 + (int(worker[2:]) % workers) * count, count


def _wait_for_redis(url: str, timeout: float) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"Redis at {url} does not answer: {exc}") from exc
            time.sleep(0.05)
        finally:
            client.close()


def start_redis(*, private: bool = False) -> RedisServer:
    """Use ``BACKPROP_TEST_REDIS_URL`` or start a private ``redis-server``.

    ``private=True`` always starts one (a test that stops and restarts it).
    """
    given = None if private else os.environ.get(REDIS_URL_ENV)
    if given:
        _wait_for_redis(given, 10)
        return RedisServer(url=given)
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailableError(
            f"`redis-server` not found: install the Debian package `redis-server`, "
            f"or set {REDIS_URL_ENV}"
        )
    root = Path(tempfile.mkdtemp(prefix="backprop-redis-"))
    port = free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "yes",
        "--dir",
        str(root),
        "--pidfile",
        str(root / "redis.pid"),
        "--logfile",
        str(root / "redis.log"),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    started = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if started.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceUnavailableError(f"redis-server failed: {started.stderr.strip()}")
    url = f"redis://127.0.0.1:{port}/0"
    server = RedisServer(url=url, process_dir=root, port=port, argv=argv)
    try:
        _wait_for_redis(url, 15)
    except ServiceUnavailableError:
        server.stop()
        raise
    return server
