"""Fair queue, run creation on large datasets, storage accounting (issue 10, defects 7, 14, 12).

``.venv/bin/python benchmarks/tenancy.py`` measures, on SQLite and on a
throwaway PostgreSQL (or ``BACKPROP_TEST_POSTGRES_URL``):

Fair pick
    :func:`app.services.execution.next_queued_run_id` (one query) with thousands
    of queued runs over many tenants, plus finished and running runs, next to the
    old oldest-first query; median of 200 calls, warm cache.
Run creation (SQLite; the reproduction's 60,000 x 784 dataset by default)
    What the old ``POST /v1/runs`` did inside its write transaction (decode the
    dataset, ``engine.check_data``) next to what it does now outside any write
    transaction (read the summary, :func:`app.datasets.summary.check_summary`), and
    the latency of ``POST /v1/runs`` and of tiny writes (``POST /v1/networks``)
    while 10 ``POST /v1/runs`` on that dataset arrive at once, through the real app
    (``TestClient``), next to the same with the old validation patched back in
    (:func:`old_run_creation`).
Storage accounting
    :func:`app.services.storage.usage` (the sums ``charge`` makes in the write
    transaction) for a tenant with 1,000 and 10,000 runs, and
    :func:`app.services.storage.stored_bytes` (settling a finished run) for a run
    of 10,000 history chunks.

Prints a Markdown table; writes it with the figures to
``benchmarks/results/tenancy.json``. ``--quick`` is a smoke run on tiny sizes
(it writes JSON only with ``--output``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

# ``python benchmarks/tenancy.py`` puts this directory first on sys.path, where
# benchmarks/engine.py would shadow the ``engine`` package: use the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from app.config import Settings  # noqa: E402
from app.datasets.parsing import ParsedDataset  # noqa: E402
from app.datasets.summary import check_summary, targets_for_loss  # noqa: E402
from app.db.database import Database  # noqa: E402
from app.db.migrations import migrate  # noqa: E402
from app.db.models import DEFAULT_OWNER, Run  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services import datasets, execution, runs, storage  # noqa: E402
from benchmarks.service import machine  # noqa: E402
from tests.support.services import start_postgres  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tenancy.json"
QUEUES = [(1_000, 10), (5_000, 50), (20_000, 500)]
"""(queued runs, tenants) of the fair-pick measurements; 5 finished runs per queued one."""
SUBMISSIONS = 10


def _median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


@contextmanager
def databases(quick: bool) -> Iterator[dict[str, str]]:
    """A migrated SQLite file and (unless ``quick``) a migrated PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="backprop-tenancy-") as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        postgres = None if quick else start_postgres()
        try:
            if postgres is not None:
                urls["postgresql"] = postgres.create_database(prefix="bp_bench")
            for url in urls.values():
                migrate(url)
            yield urls
        finally:
            if postgres is not None:
                postgres.drop_database(urls["postgresql"])
                postgres.stop()


def _fill_queue(db: Database, queued: int, tenants: int) -> None:
    """``queued`` queued runs over ``tenants``, 5 finished runs and 1 running run per tenant."""
    rng = np.random.default_rng(0)
    now = _now()
    rows: list[dict[str, Any]] = []
    for i in range(queued * 6):
        status = "queued" if i < queued else "succeeded"
        if queued <= i < queued + tenants:
            status = "running"
        rows.append(
            {
                "id": f"run_{i:012x}{int(rng.integers(2**40)):012x}",
                "owner": f"t_{i % tenants}",
                "status": status,
                "network_id": "net_bench",
                "config": {},
                "epochs": 1,
                "created_at": now,
                "started_at": None if status == "queued" else now,
            }
        )
    from sqlalchemy import insert, text

    with db.writing() as session:
        session.execute(text("DELETE FROM run"))
        session.execute(text("DELETE FROM network"))
        session.execute(
            text(
                "INSERT INTO network (id, owner, name, spec, input_size, output_size, "
                "n_parameters, created_at) VALUES ('net_bench', 'x', 'n', '{}', 1, 1, 1, "
                ":now)"
            ),
            {"now": _now()},
        )
        if rows:
            session.execute(insert(Run), rows)
        session.commit()
        session.execute(text("ANALYZE"))
        session.commit()


def _now() -> Any:
    from app.db.models import utcnow

    return utcnow()


def _oldest_first(db: Database) -> str | None:
    from sqlmodel import col, select

    with db.reading() as session:
        return session.exec(
            select(Run.id).where(Run.status == "queued").order_by(col(Run.id)).limit(1)
        ).first()


def _fair_pick_ms(db: Database, repeat: int) -> float:
    def fair() -> None:
        with db.reading() as session:
            execution.next_queued_run_id(session=session)

    return _median_ms(fair, repeat)


def fair_pick(urls: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    """Median time of the fair pick and of the old oldest-first pick (a read session each)."""
    results = []
    repeat = 20 if quick else 200
    for backend, url in urls.items():
        db = Database(url)
        try:
            for queued, tenants in QUEUES[:1] if quick else QUEUES:
                _fill_queue(db, queued, tenants)
                results.append(
                    {
                        "backend": backend,
                        "queued": queued,
                        "tenants": tenants,
                        "runs": queued * 6,
                        "fair_ms": _fair_pick_ms(db, repeat),
                        "oldest_first_ms": _median_ms(partial(_oldest_first, db), repeat),
                    }
                )
                print(f"fair pick: {results[-1]}", file=sys.stderr)
        finally:
            db.dispose()
    return results


def _large_dataset(db: Database, samples: int, features: int) -> str:
    rng = np.random.default_rng(0)
    parsed = ParsedDataset(
        X=rng.random((samples, features)),
        y=rng.integers(0, 10, samples).astype(np.int64),
        target_type="labels",
    )
    with db.writing() as session:
        return datasets.create_dataset(
            session=session, owner=DEFAULT_OWNER, name="large", parsed=parsed
        ).id


def _network(features: int) -> engine.Network:
    return engine.Network.from_spec(
        {"input_size": features, "layers": [{"units": 10, "activation": "softmax"}]}
    )


def run_creation(url: str, samples: int, features: int) -> dict[str, Any]:
    """The old and new validation work, and tiny writes behind 10 concurrent creates."""
    settings = Settings(database_url=url, workers=0, max_active_runs=1000)
    app = create_app(settings)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        db: Database = app.state.db
        dataset_id = _large_dataset(db, samples, features)
        net = _network(features)
        config = engine.FitConfig.from_dict({"loss": "cross_entropy", "epochs": 1})

        def old_check() -> None:
            with db.reading() as session:
                X, y = datasets.load_arrays(session=session, dataset_id=dataset_id)
            engine.check_data(net, config, X, targets_for_loss("cross_entropy", y))

        def new_check() -> None:
            with db.reading() as session:
                summary, records, _ = datasets.summary_of(session=session, dataset_id=dataset_id)
                check_summary(net, config, summary, records)

        result: dict[str, Any] = {
            "samples": samples,
            "features": features,
            "old_check_ms": _median_ms(old_check, 3),
            "new_check_ms": _median_ms(new_check, 20),
        }
        network = client.post(
            "/v1/networks",
            json={
                "name": "wide",
                "input_size": features,
                "layers": [{"units": 10, "activation": "softmax"}],
            },
        ).json()["id"]
        body = {"network_id": network, "dataset_id": dataset_id, "loss": "cross_entropy"}

        def create() -> None:
            response = client.post("/v1/runs", json={**body, "epochs": 1})
            assert response.status_code == 202, response.text

        create()  # warm-up (first request, caches)
        result["new_create_ms"] = _median_ms(create, 5)
        result["tiny_write_ms"] = _tiny_writes_behind(client, create)
        with old_run_creation():
            result["old_create_ms"] = _median_ms(create, 3)
            result["tiny_write_old_ms"] = _tiny_writes_behind(client, create)
    return result


@contextmanager
def old_run_creation() -> Iterator[None]:
    """``POST /v1/runs`` as before issue 10: every read in the write transaction (on
    SQLite it holds the write lock from its first read), and the dataset decoded and
    checked with :func:`engine.check_data`."""
    create, check = runs.create_run, runs._check_data

    def old_check(
        session: Session,
        net: engine.Network,
        fit_config: engine.FitConfig,
        dataset_id: str,
        loc: tuple[str, ...],
    ) -> None:
        X, y = datasets.load_arrays(session=session, dataset_id=dataset_id)
        try:
            engine.check_data(net, fit_config, X, targets_for_loss(fit_config.loss, y))
        except engine.ConfigError as exc:
            raise runs._data_error(exc, loc, dataset_id) from exc

    def old_create(**kwargs: Any) -> Run:
        kwargs.pop("read_session", None)
        return create(**kwargs)

    runs.create_run, runs._check_data = old_create, old_check
    try:
        yield
    finally:
        runs.create_run, runs._check_data = create, check


def _tiny_writes_behind(client: Any, submission: Callable[[], None]) -> dict[str, float]:
    """p50 and max latency of tiny writes from when SUBMISSIONS ``submission`` calls start at
    once until they are done (at least 5 writes)."""
    tiny = {"name": "tiny", "input_size": 1, "layers": [{"units": 1, "activation": "identity"}]}
    stop = threading.Event()
    barrier = threading.Barrier(SUBMISSIONS + 1)

    def writes() -> list[float]:
        barrier.wait(timeout=60)
        latencies: list[float] = []
        while not stop.is_set() or len(latencies) < 5:
            started = time.perf_counter()
            assert client.post("/v1/networks", json=tiny).status_code == 201
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
        return latencies

    def submit() -> None:
        barrier.wait(timeout=60)
        submission()

    with ThreadPoolExecutor(max_workers=SUBMISSIONS + 1) as pool:
        probe = pool.submit(writes)
        for future in [pool.submit(submit) for _ in range(SUBMISSIONS)]:
            future.result(timeout=600)
        stop.set()
        latencies = probe.result(timeout=60)
    return {
        "p50": round(statistics.median(latencies) * 1000, 1),
        "max": round(max(latencies) * 1000, 1),
        "writes": len(latencies),
    }


def _fill_storage(db: Database, runs: int, chunks: int) -> str:
    """``runs`` finished runs of one tenant (settled) and one run of ``chunks`` history chunks."""
    from sqlalchemy import insert, text

    from app.db.models import RunHistoryChunk, RunStorage
    from app.services.history import make_chunk

    _fill_queue(db, 0, 1)
    rows = [
        {
            "id": f"run_s{i:011x}000000000000",
            "owner": DEFAULT_OWNER,
            "status": "succeeded",
            "network_id": "net_bench",
            "config": {},
            "epochs": 1,
            "created_at": _now(),
        }
        for i in range(runs)
    ]
    charges = [
        {
            "run_id": row["id"],
            "owner": DEFAULT_OWNER,
            "reserved_bytes": 10**6,
            "stored_bytes": 10**4,
        }
        for row in rows
    ]
    history = []
    for i in range(chunks):
        chunk = make_chunk(rows[0]["id"], {"epoch": [2 * i + 1, 2 * i + 2], "loss": [0.5, 0.4]})
        assert chunk is not None
        history.append(chunk.model_dump())
    with db.writing() as session:
        session.execute(text("DELETE FROM run_storage"))
        session.execute(insert(Run), rows)
        session.execute(insert(RunStorage), charges)
        session.execute(insert(RunHistoryChunk), history)
        session.commit()
        session.execute(text("ANALYZE"))
        session.commit()
    return str(rows[0]["id"])


def _usage(db: Database) -> None:
    with db.reading() as session:
        storage.usage(session=session, owner=DEFAULT_OWNER)


def _settle(db: Database, run_id: str) -> None:
    with db.reading() as session:
        storage.stored_bytes(session=session, run_ids=[run_id])


def storage_accounting(urls: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    """Median time of the usage sums and of settling a run of many chunks."""
    results = []
    for backend, url in urls.items():
        db = Database(url)
        try:
            for runs in (100,) if quick else (1_000, 10_000):
                chunks = 100 if quick else 10_000
                run_id = _fill_storage(db, runs, chunks)
                results.append(
                    {
                        "backend": backend,
                        "runs": runs,
                        "usage_ms": _median_ms(partial(_usage, db), 50),
                        "chunks": chunks,
                        "settle_ms": _median_ms(partial(_settle, db, run_id), 20),
                    }
                )
                print(f"storage: {results[-1]}", file=sys.stderr)
        finally:
            db.dispose()
    return results


def table(results: dict[str, Any]) -> str:
    """The Markdown table of ``results``."""
    lines = ["| measure | new | old | ratio |", "|---|---|---|---|"]
    for row in results["fair_pick"]:
        lines.append(
            f"| fair pick, {row['backend']}, {row['queued']} queued / {row['tenants']} tenants "
            f"/ {row['runs']} runs | {row['fair_ms']} ms | {row['oldest_first_ms']} ms "
            f"(oldest first, unfair) | {row['fair_ms'] / max(row['oldest_first_ms'], 1e-3):.1f}x |"
        )
    creation = results["run_creation"]
    size = f"{creation['samples']} x {creation['features']}"
    lines.append(
        f"| data check of `POST /v1/runs`, {size} | {creation['new_check_ms']} ms (summary, "
        f"read transaction) | {creation['old_check_ms']} ms (decode + check_data, in the write "
        f"transaction) | {creation['old_check_ms'] / max(creation['new_check_ms'], 1e-3):.0f}x |"
    )
    new, old = creation["tiny_write_ms"], creation["tiny_write_old_ms"]
    lines.append(
        f"| tiny write behind {SUBMISSIONS} concurrent creates on it, p50 / max | "
        f"{new['p50']} / {new['max']} ms | {old['p50']} / {old['max']} ms | "
        f"{old['max'] / max(new['max'], 1e-3):.0f}x (max) |"
    )
    lines.append(
        f"| `POST /v1/runs` on it, alone | {creation['new_create_ms']} ms | "
        f"{creation['old_create_ms']} ms | "
        f"{creation['old_create_ms'] / max(creation['new_create_ms'], 1e-3):.0f}x |"
    )
    for row in results["storage"]:
        lines.append(
            f"| quota sums, {row['backend']}, tenant of {row['runs']} runs | "
            f"{row['usage_ms']} ms | | |"
        )
        lines.append(
            f"| settling a run of {row['chunks']} history chunks, {row['backend']} | "
            f"{row['settle_ms']} ms (once per run) | | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    samples, features = (2_000, 50) if args.quick else (args.samples, args.features)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    with databases(args.quick) as urls:
        results["fair_pick"] = fair_pick(urls, args.quick)
        results["storage"] = storage_accounting(urls, args.quick)
    with tempfile.TemporaryDirectory(prefix="backprop-tenancy-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'create.db'}"
        migrate(url)
        results["run_creation"] = run_creation(url, samples, features)
    results["table"] = table(results)
    print(results["table"])
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
