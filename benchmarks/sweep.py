"""Many small runs: the service's dispatch and bookkeeping against training alone (issue 13).

``.venv/bin/python benchmarks/sweep.py`` starts ``backprop serve`` (a fresh SQLite
file, the local pool with 2 worker processes, ``BACKPROP_MAX_ACTIVE_RUNS`` raised to
the burst) and measures, side by side in one run:

Burst of runs
    200 XOR runs (2-3-1, sigmoid, MSE, SGD, 200 epochs, full batch) POSTed at once
    from 16 client threads. Runs/s = runs / (last ``finished_at`` - first
    ``created_at``, server clocks); dispatch = each POST's latency (p50, p99).
Sweep
    A 200-trial random sweep over the learning rate of the same run, parallelism 8:
    trials/s from the sweep's creation to its last trial's ``finished_at``.
Baseline
    The same 200 trainings by ``engine.fit`` in 2 processes (``multiprocessing``),
    no service: runs/s.

Goal: each at least 0.8x the baseline's runs/s (at most 20% of the machine on
dispatch, database and bookkeeping), and dispatch p99 < 100 ms during the burst.
Writes ``benchmarks/results/sweep.json``; ``--runs`` changes the counts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks.service import machine, percentile_ms  # noqa: E402
from tests.support.server import running_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sweep.json"
XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [[0.0], [1.0], [1.0], [0.0]]
NETWORK = {
    "name": "xor",
    "input_size": 2,
    "layers": [
        {"units": 3, "activation": "sigmoid"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "init": {"seed": 0},
}
CONFIG: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 4,
    "loss": "mse",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "seed": 0,
}
TERMINAL = {"succeeded", "failed", "cancelled"}


def train_alone(seed: int) -> float:
    """One run's training by ``engine.fit`` (the baseline's unit of work)."""
    import engine

    net = engine.Network.from_spec({**NETWORK, "init": {"seed": seed}})
    result = engine.fit(net, XOR_X, XOR_Y, {**CONFIG, "seed": seed})
    return float(result.history["loss"][-1])


def baseline(runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(train_alone, range(runs))
    seconds = time.perf_counter() - started
    return {"runs": runs, "seconds": seconds, "runs_per_second": runs / seconds}


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_runs(client: httpx.Client, ids: list[str], timeout: float = 600.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [client.get(f"/v1/runs/{run_id}").json() for run_id in ids]
        if all(run["status"] in TERMINAL for run in runs):
            return runs
        time.sleep(0.5)
    raise TimeoutError("runs did not finish")


def burst(
    client: httpx.Client, url: str, network_id: str, dataset_id: str, runs: int
) -> dict[str, Any]:
    body = {**CONFIG, "network_id": network_id, "dataset_id": dataset_id}

    def post(seed: int) -> tuple[float, int, str]:
        started = time.perf_counter()
        with httpx.Client(base_url=url, timeout=60) as own:
            response = own.post("/v1/runs", json={**body, "seed": seed})
        return time.perf_counter() - started, response.status_code, response.json().get("id", "")

    with ThreadPoolExecutor(16) as pool:
        posted = list(pool.map(post, range(runs)))
    refused = sum(1 for _, status, _ in posted if status != 201)
    ids = [run_id for _, status, run_id in posted if status == 201]
    finished = wait_runs(client, ids)
    first = min(_time(run["created_at"]) for run in finished)
    last = max(_time(run["finished_at"]) for run in finished)
    latencies = [seconds for seconds, _, _ in posted]
    return {
        "runs": len(ids),
        "refused": refused,
        "succeeded": sum(1 for run in finished if run["status"] == "succeeded"),
        "seconds": last - first,
        "runs_per_second": len(ids) / (last - first),
        "dispatch_p50_ms": percentile_ms(latencies, 50),
        "dispatch_p99_ms": percentile_ms(latencies, 99),
    }


def sweep(
    client: httpx.Client, network_id: str, dataset_id: str, trials: int
) -> dict[str, Any] | None:
    """A random sweep of ``trials`` trials, or None when the server has no sweeps."""
    body = {
        "name": "lr",
        "network_id": network_id,
        "dataset_id": dataset_id,
        "config": CONFIG,
        "parameters": {"optimizer.learning_rate": {"log_uniform": [0.05, 5.0]}},
        "method": "random",
        "max_trials": trials,
        "parallelism": 8,
        "objective": {"metric": "loss", "mode": "min"},
        "seed": 0,
    }
    response = client.post("/v1/sweeps", json=body)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    created = response.json()
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        state = client.get(f"/v1/sweeps/{created['id']}").json()
        if state["status"] in TERMINAL:
            break
        time.sleep(0.5)
    else:
        raise TimeoutError("the sweep did not finish")
    runs = [client.get(f"/v1/runs/{trial['run_id']}").json() for trial in state["trials"]]
    last = max(_time(run["finished_at"]) for run in runs if run.get("finished_at"))
    seconds = last - _time(created["created_at"])
    return {
        "trials": len(runs),
        "status": state["status"],
        "seconds": seconds,
        "runs_per_second": len(runs) / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    alone = baseline(args.runs)
    env = {"BACKPROP_WORKERS": "2", "BACKPROP_MAX_ACTIVE_RUNS": str(args.runs + 16)}
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_server(Path(workdir), env) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        network_id = client.post("/v1/networks", json=NETWORK).json()["id"]
        dataset = {"name": "xor", "X": XOR_X, "y": XOR_Y}
        dataset_id = client.post("/v1/datasets", json=dataset).json()["id"]
        runs = burst(client, server.url, network_id, dataset_id, args.runs)
        trials = sweep(client, network_id, dataset_id, args.runs)
    rows = [
        ("engine.fit, 2 processes", f"{alone['runs_per_second']:.0f} runs/s", "1.00x", ""),
        (
            f"burst of {runs['runs']} runs ({runs['refused']} refused)",
            f"{runs['runs_per_second']:.0f} runs/s",
            f"{runs['runs_per_second'] / alone['runs_per_second']:.2f}x",
            f"dispatch p50 {runs['dispatch_p50_ms']:.0f} ms, p99 {runs['dispatch_p99_ms']:.0f} ms",
        ),
    ]
    if trials is not None:
        rows.append(
            (
                f"random sweep, {trials['trials']} trials ({trials['status']})",
                f"{trials['runs_per_second']:.0f} runs/s",
                f"{trials['runs_per_second'] / alone['runs_per_second']:.2f}x",
                "",
            )
        )
    print("| work | throughput | of engine.fit (goal >= 0.8x) | dispatch (goal p99 < 100 ms) |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    report = {
        "command": "python benchmarks/sweep.py",
        "machine": machine(),
        "engine_fit": alone,
        "burst": runs,
        "sweep": trials,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
