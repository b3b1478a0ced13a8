"""What the API says when its database cannot serve it: 503, Retry-After and the reason.

The restarts, the full disk and the workers' side are in
tests/integration/test_faults.py; here a real PostgreSQL database is made
read-only under the running app, and the error classification is checked on the
drivers' own exception types.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from backprop_client import Client, ServiceUnavailable
from psycopg import errors as pg_errors
from psycopg import sql
from sqlalchemy import exc as sa_exc

import engine
from app.config import Settings
from app.db.database import Database
from app.db.errors import is_unavailable, unavailable_reason
from app.jobs.lease import RunLease
from app.jobs.progress import ProgressCallback
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, create_xor, run_body
from tests.support.services import PostgresServer, database_name, free_port


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """This module's app tests run on PostgreSQL only (it can be made read-only)."""
    return postgres_url


def _wrap(error: Exception) -> sa_exc.DBAPIError:
    """The SQLAlchemy exception that wraps ``error`` raised by a driver."""
    wrapped = sa_exc.DBAPIError.instance("UPDATE run SET epoch=?", {}, error, Exception)
    assert isinstance(wrapped, sa_exc.DBAPIError)
    return wrapped


@pytest.mark.parametrize(
    ("driver_error", "reason"),
    [
        (sqlite3.OperationalError("database or disk is full"), "the database's disk is full"),
        (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
        (sqlite3.OperationalError("database is locked"), "the database is busy"),
        (sqlite3.OperationalError("unable to open database file"), "unreachable"),
        (sqlite3.OperationalError("disk I/O error"), "I/O error"),
        (pg_errors.ReadOnlySqlTransaction("cannot execute UPDATE"), "read-only"),
        (pg_errors.DiskFull("could not extend file"), "the database's disk is full"),
        (pg_errors.AdminShutdown("terminating connection"), "unreachable"),
        (pg_errors.TooManyConnections("too many clients"), "the database is busy"),
        (psycopg.OperationalError("connection refused"), "unreachable"),
        (psycopg.InterfaceError("the connection is closed"), "unreachable"),
    ],
)
def test_outages_are_recognised_with_their_reason(driver_error: Exception, reason: str) -> None:
    found = unavailable_reason(_wrap(driver_error))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "driver_error",
    [
        sqlite3.IntegrityError("UNIQUE constraint failed: run.id"),
        sqlite3.OperationalError("no such table: run"),
        pg_errors.UniqueViolation("duplicate key value"),
        pg_errors.UndefinedTable("relation run does not exist"),
        pg_errors.NumericValueOutOfRange("out of range"),
    ],
)
def test_bugs_and_bad_data_are_not_outages(driver_error: Exception) -> None:
    assert not is_unavailable(_wrap(driver_error))
    assert not is_unavailable(ValueError("not a database error"))


def _set_read_only(server: PostgresServer, database_url: str, read_only: bool) -> None:
    name = database_name(database_url)
    with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as conn:
        action = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        conn.execute(sql.SQL("ALTER DATABASE {} " + action).format(sql.Identifier(name)))


@pytest.fixture
def read_only(postgres_server: PostgresServer, database_url: str) -> Iterator[Any]:
    """``read_only(True)`` makes the database read-only for new connections."""
    changed = []

    def switch(on: bool) -> None:
        _set_read_only(postgres_server, database_url, on)
        changed.append(on)

    yield switch
    if changed and changed[-1]:
        _set_read_only(postgres_server, database_url, False)


def test_a_read_only_database_answers_503_for_writes_and_still_reads(
    client: Any, read_only: Any
) -> None:
    network_id, dataset_id = create_xor(client)
    read_only(True)
    client.app.state.db.dispose()  # new connections pick the setting up
    assert client.get(f"/v1/networks/{network_id}").status_code == 200
    assert client.get("/v1/runs").status_code == 200
    for response in (
        client.post("/v1/networks", json=XOR_NETWORK),
        client.post("/v1/runs", json=run_body(network_id, dataset_id)),
        client.delete(f"/v1/datasets/{dataset_id}"),
    ):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "detail": "Service unavailable: the database is read-only. Retry in a few seconds."
        }
    assert client.get("/healthz").status_code == 200  # reads work: not a dead database
    read_only(False)
    client.app.state.db.dispose()
    assert client.post("/v1/networks", json=XOR_NETWORK).status_code == 201
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200  # the delete was refused


def test_every_v1_operation_documents_the_503(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = [
        (path, method, operation)
        for path, methods in paths.items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) > 20
    for path, method, operation in operations:
        documented = operation["responses"].get("503")
        assert documented is not None, f"{method.upper()} {path} does not document 503"
        assert "Retry-After" in documented["headers"]


def _set_reachable(server: PostgresServer, database_url: str, reachable: bool) -> None:
    """Refuse (or allow again) connections to the database and cut the open ones."""
    name = database_name(database_url)
    with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as conn:
        allowed = sql.SQL("true" if reachable else "false")
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), allowed
            )
        )
        if not reachable:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_the_client_waits_through_an_outage(
    make_client: Any, postgres_server: PostgresServer, database_url: str
) -> None:
    with make_client() as test_client:  # no workers: the run stays queued until cancelled
        bp = Client(str(test_client.base_url), http=test_client, retries=0)  # the error itself
        network_id, dataset_id = create_xor(test_client)
        run = bp.create_run(network_id, dataset_id, epochs=100)
        _set_reachable(postgres_server, database_url, False)
        try:
            with pytest.raises(ServiceUnavailable) as raised:
                bp.get_run(run.id)
            assert raised.value.retry_after == 5
            assert "the database is unreachable" in str(raised.value)
            with pytest.raises(ServiceUnavailable):  # never answered: the error, not a timeout
                bp.wait(run.id, poll=0.05, timeout=0.5)

            def end_outage_then_cancel() -> None:
                time.sleep(1.0)
                _set_reachable(postgres_server, database_url, True)
                Client(str(test_client.base_url), http=test_client).cancel(run.id)

            helper = threading.Thread(target=end_outage_then_cancel)
            helper.start()
            started = time.monotonic()
            done = bp.wait(run.id, poll=0.05, timeout=60)
            helper.join()
        finally:
            _set_reachable(postgres_server, database_url, True)
        assert done.status == "cancelled"
        assert time.monotonic() - started >= 1.0  # it did wait through the outage


def test_training_holds_once_the_lease_may_have_expired_during_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker cut off from its database (nothing listens on the port) trains on until its
    lease could have expired, then holds: another worker may own the run by then."""
    unreachable = Database(f"postgresql+psycopg://backprop@127.0.0.1:{free_port()}/backprop")
    net = engine.Network.from_spec(
        {
            "input_size": 2,
            "layers": [
                {"units": 3, "activation": "sigmoid"},
                {"units": 1, "activation": "sigmoid"},
            ],
        }
    )
    callback = ProgressCallback(
        run_id="run_cut_off",
        network=net,
        checkpoint_every=None,
        monitor="loss",
        best_loss=None,
        start_epoch=0,
        auto_checkpoint_seconds=0.1,
        keep_auto_checkpoints=2,
    )
    settings = Settings(
        lease_seconds=0.6, flush_seconds=0.05, auto_checkpoint_seconds=0.1, keep_auto_checkpoints=2
    )
    lease = RunLease(
        db=unreachable,
        run_id="run_cut_off",
        owner="worker-a",
        source=callback,
        settings=settings,
        lease_since=time.monotonic(),
    )
    config = {"loss": "mse", "epochs": 100_000_000, "optimizer": {"name": "sgd"}}
    outcome: list[engine.FitResult] = []
    X, y = np.array(XOR_X, float), np.array(XOR_Y, float)
    training = threading.Thread(
        target=lambda: outcome.append(engine.fit(net, X, y, config, [callback, lease]))
    )
    with caplog.at_level(logging.WARNING):
        training.start()
        deadline = time.monotonic() + 30
        while "run.waiting_for_database" not in _events(caplog):
            assert time.monotonic() < deadline and training.is_alive(), "training never held"
            time.sleep(0.05)
        held_at = callback.epoch
        time.sleep(0.5)
        assert callback.epoch == held_at, "training went on with an expired lease"
        assert callback.epoch > 0 and lease.outage.active
        lease.request_shutdown()
        training.join(10)
    assert not training.is_alive()
    assert outcome[0].stop_reason == "shutdown" and outcome[0].epochs_run == held_at
    unreachable.dispose()


def _events(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {str(getattr(record, "event", "")) for record in caplog.records}
