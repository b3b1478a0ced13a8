"""The Celery executor's pieces: configuration, messages, the lease check, the supervisor."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from app.api.schemas import DatasetCreate, NetworkCreate, RunCreate
from app.config import Settings
from app.datasets.parsing import parse_json
from app.db.database import Database
from app.db.migrations import head_revision, wait_for_schema
from app.db.models import DEFAULT_OWNER, Run, utcnow
from app.jobs import celery_app
from app.jobs.celery_app import QUEUE, TASK_NAME, celery_config, make_celery, worker_argv
from app.jobs.celery_executor import CeleryExecutor
from app.jobs.dispatch import ExecutorUnavailableError, make_executor
from app.jobs.execute_run import Outcome
from app.services import datasets, execution, networks, runs
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.services import RedisServer


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _new_run(db: Database, owner: str = DEFAULT_OWNER) -> str:
    """A queued XOR run of ``owner`` (through the services, as the API creates it)."""
    with db.writing() as session:
        net = networks.create_network(
            session=session,
            owner=owner,
            network_in=NetworkCreate(**XOR_NETWORK),
            max_parameters=1000,
        )
        body = DatasetCreate(name="xor", X=XOR_X, y=XOR_Y)
        ds = datasets.create_dataset(
            session=session, owner=owner, name="xor", parsed=parse_json(body.X, body.y)
        )
        run = runs.create_run(
            session=session,
            owner=owner,
            run_in=RunCreate(network_id=net.id, dataset_id=ds.id, epochs=10),
            limits=runs.RunLimits(max_run_work=1000, max_active_runs=10),
        )
        return run.id


def _row(db: Database, run_id: str) -> dict[str, Any]:
    with db.reading() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.model_dump()


@pytest.fixture
def broker(redis_server: RedisServer) -> str:
    return redis_server.database_url()


@pytest.fixture
def celery_settings(settings_for: Callable[..., Settings], broker: str) -> Settings:
    return settings_for(broker_url=broker)


def _queued_messages(broker: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(broker)
    try:
        return [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    finally:
        client.close()


def test_configuration_is_json_only_and_safe_for_long_tasks() -> None:
    settings = Settings(broker_url="redis://localhost:6379/0", broker_visibility_timeout=42)
    config = celery_config(settings)
    assert config["accept_content"] == ["json"] and config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_ignore_result"]
    transport = config["broker_transport_options"]
    assert transport["visibility_timeout"] == 42
    assert transport["unacked_restore_interval"] == settings.broker_restore_interval
    assert transport["unacked_restore_throttle"] == 1
    assert "pickle" not in json.dumps(config)
    app = make_celery(settings)
    assert TASK_NAME in app.tasks and app.conf.accept_content == ["json"]


def test_worker_command_line() -> None:
    argv = worker_argv(concurrency=3, hostname="backprop-1@%h", quiet=True)
    assert argv[0] == "--quiet" and "worker" in argv
    for expected in (
        "--pool=prefork",
        "--concurrency=3",
        "--prefetch-multiplier=1",
        f"--queues={QUEUE}",
        "--hostname=backprop-1@%h",
    ):
        assert expected in argv
    assert argv[argv.index("-O") + 1] == "fair"


def test_make_executor_picks_celery_for_a_redis_url(db: Database) -> None:
    executor = make_executor(Settings(broker_url="redis://127.0.0.1:1/0"), db)
    assert isinstance(executor, CeleryExecutor)
    with pytest.raises(ExecutorUnavailableError, match="Redis URL"):
        make_executor(Settings(broker_url="amqp://guest@localhost//"), db)


def test_messages_carry_only_the_run_id_as_json(celery_settings: Settings, broker: str) -> None:
    executor = CeleryExecutor(settings=celery_settings, db=Database(celery_settings.database_url))
    executor.submit("run_0123456789ab0123456789ab")
    (message,) = _queued_messages(broker)
    assert message["content-type"] == "application/json"
    assert message["headers"]["task"] == TASK_NAME
    body = json.loads(base64.b64decode(message["body"]))
    assert body[0] == ["run_0123456789ab0123456789ab"] and body[1] == {}


def test_submit_with_the_broker_down_is_logged_not_raised(
    settings_for: Callable[..., Settings], db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.services import free_port

    settings = settings_for(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    executor = CeleryExecutor(settings=settings, db=db)
    assert executor.publish("run_0123456789ab0123456789ab") is False
    assert any(getattr(r, "event", None) == "run.dispatch_failed" for r in caplog.records)


def test_a_delivery_for_a_run_with_a_live_lease_drops_itself_and_writes_nothing(
    celery_settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    run_id = _new_run(db)
    with db.writing() as session:
        assert execution.claim_run(
            session=session, run_id=run_id, owner="elsewhere", lease_seconds=60, supervisor=None
        )
    before = _row(db, run_id)
    sent: list[Any] = []

    class App:
        def send_task(self, *args: Any, **kwargs: Any) -> None:
            sent.append((args, kwargs))

    assert celery_app._run_task(App(), celery_settings, run_id) == "skipped"
    assert _row(db, run_id) == before
    assert sent == []
    dropped = [r for r in caplog.records if getattr(r, "event", None) == "run.delivery_dropped"]
    assert dropped and "lease held by elsewhere" in dropped[0].getMessage()
    assert celery_app._run_task(App(), celery_settings, "../etc") == "invalid"


def test_a_delivery_trains_the_fairest_queued_run_not_the_one_it_names(
    celery_settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    a_training = _new_run(db, owner="t_a")
    a_queued = [_new_run(db, owner="t_a") for _ in range(3)]
    b_queued = _new_run(db, owner="t_b")  # queued last, but tenant B has nothing running
    with db.writing() as session:
        assert execution.claim_run(
            session=session, run_id=a_training, owner="elsewhere", lease_seconds=60, supervisor=None
        )
    sent: list[Any] = []

    class App:
        def send_task(self, *args: Any, **kwargs: Any) -> None:
            sent.append((args, kwargs))

    # A's oldest queued run's message is delivered first (the broker is FIFO) ...
    assert celery_app._run_task(App(), celery_settings, a_queued[0]) == "succeeded"
    # ... and trains B's run: A has one running, B none.
    assert _row(db, b_queued)["status"] == "succeeded"
    assert [_row(db, run_id)["status"] for run_id in a_queued] == ["queued"] * 3
    redirected = [
        r for r in caplog.records if getattr(r, "event", None) == "run.delivery_redirected"
    ]
    assert [r.run_id for r in redirected] == [b_queued]  # type: ignore[attr-defined]
    # B's own message then trains A's oldest queued run: every message claims one run.
    assert celery_app._run_task(App(), celery_settings, b_queued) == "succeeded"
    assert [_row(db, run_id)["status"] for run_id in a_queued] == ["succeeded", "queued", "queued"]
    assert sent == []


def test_a_run_handed_back_on_shutdown_is_sent_again(
    celery_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery_app, "execute_run", lambda run_id, **_: Outcome(run_id, "requeued"))
    sent: list[Any] = []

    class App:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            sent.append((name, args, queue))

    assert celery_app._run_task(App(), celery_settings, "run_1") == "requeued"
    assert sent == [(TASK_NAME, ["run_1"], QUEUE)]


def test_supervisor_requeues_expired_leases_and_sends_them_again(
    celery_settings: Settings, db: Database, broker: str
) -> None:
    run_id = _new_run(db)
    with db.writing() as session:
        execution.claim_run(
            session=session, run_id=run_id, owner="dead", lease_seconds=60, supervisor=None
        )
        run = session.get(Run, run_id)
        assert run is not None
        run.lease_expires_at = utcnow() - timedelta(seconds=1)
        session.add(run)
        session.commit()
    executor = CeleryExecutor(settings=celery_settings, db=db)
    assert executor.sweep() == [run_id]
    assert _row(db, run_id)["status"] == "queued"
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in _queued_messages(broker)] == [
        [run_id]
    ]
    assert executor.sweep() == []


def test_supervisor_redispatches_queued_runs_whose_message_is_gone(
    celery_settings: Settings, db: Database, broker: str
) -> None:
    run_id = _new_run(db)  # committed, but never published: its message is "lost"
    executor = CeleryExecutor(settings=celery_settings, db=db)
    try:
        assert executor.redispatch_orphans() == []  # first sighting: maybe in flight
        assert executor.redispatch_orphans() == [run_id]
        assert executor.broker_queue_length == 0
        assert len(_queued_messages(broker)) == 1
        # A message is waiting now: nothing is sent again while the queue is not empty.
        assert executor.redispatch_orphans() == []
        assert executor.redispatch_orphans() == []
        assert executor.broker_queue_length == 1
    finally:
        executor.stop()


def test_wait_for_schema(database_url: str, tmp_path: Path) -> None:
    assert wait_for_schema(database_url, timeout=0)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert not wait_for_schema(empty, timeout=0.3, interval=0.1)
    assert head_revision()
