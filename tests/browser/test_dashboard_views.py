"""The dashboard's readable runs table, chart ticks and log toggle, favicon, compare
overlay and sweep view in Debian's chromium (screenshots in test-output/browser/).

The sweep test runs once the server serves ``/v1/sweeps`` (skipped while the route is
absent from the OpenAPI document).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from app.main import create_app
from tests.browser.test_docs_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CSP_VIOLATIONS,
    OUTPUT_DIR,
    csp_violations,
    keep_local,
    require_chromium,
)
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.browser

KEY = "dashboard-views-key"
ENV = {"BACKPROP_API_KEYS": KEY, "BACKPROP_WORKERS": "2", "BACKPROP_FLUSH_SECONDS": "0.1"}
HEADERS = {"Authorization": f"Bearer {KEY}"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def _has_route(path: str) -> bool:
    return path in create_app().openapi()["paths"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("dashboard-views"), ENV) as started:
        yield started


def _finished_run(client: httpx.Client, name: str, learning_rate: float) -> dict[str, Any]:
    network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
    body = {
        "name": name,
        "network_id": network,
        "dataset_id": dataset["id"],
        "loss": "binary_cross_entropy",
        "metrics": ["accuracy"],
        "optimizer": {"name": "sgd", "learning_rate": learning_rate, "momentum": 0.9},
        "epochs": 300,
        "history_every": 10,
        "seed": 3,
    }
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in TERMINAL:
            assert run["status"] == "succeeded", run
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def _open(browser: Browser, server: ServerProcess, outside: list[str]) -> tuple[Page, list[str]]:
    """The dashboard with the key saved, and the list of failed responses it sees."""
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.route("**/*", lambda route: keep_local(route, server.url, outside))
    page.add_init_script(CSP_VIOLATIONS)
    page.add_init_script(f"localStorage.setItem('backprop.apiKey', '{KEY}')")
    page.goto(server.url + "/")
    return page, failed


def _texts(page: Page, selector: str) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(selector, "es => es.map(e => e.textContent)")
    return texts


def test_runs_table_columns_chart_ticks_log_toggle_and_favicon(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        run = _finished_run(client, "xor-readable", 0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page, failed = _open(browser, server, outside)
                row = page.locator(f'#runs tbody tr[data-run-id="{run["id"]}"]')
                row.wait_for(timeout=30_000)
                heads = _texts(page, "#runs thead th")
                assert heads[1:] == [
                    "name",
                    "status",
                    "epoch",
                    "accuracy",
                    "loss",
                    "best epoch",
                    "created (UTC)",
                ]
                cells = row.locator("td")
                assert cells.nth(1).locator(".run-name").text_content() == "xor-readable"
                assert cells.nth(2).text_content() == "succeeded"
                accuracy = run["metrics"]["accuracy"]
                assert cells.nth(4).text_content() == f"{100 * accuracy:.1f}%"
                assert float(cells.nth(5).text_content() or "nan") == pytest.approx(
                    run["loss"], rel=1e-3
                )
                assert cells.nth(6).text_content() == str(run["best_epoch"])
                assert cells.nth(7).text_content() == run["created_at"][:19].replace("T", " ")
                # The layout uses the page width.
                width = page.eval_on_selector("#runs-view", "e => e.getBoundingClientRect().width")
                assert width > 0.95 * 1600

                row.click()
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.points == 30", timeout=30_000
                )
                linear = _texts(page, "#chart .tick-y")
                assert len(linear) >= 3 and len(_texts(page, "#chart .tick-x")) >= 3
                assert "300" in _texts(page, "#chart .tick-x")
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-linear.png"))
                page.check("#log-scale")
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.log === 'true'"
                )
                logged = _texts(page, "#chart .tick-y")
                assert logged != linear and len(logged) >= 2
                values = [float(t) for t in logged]
                ratios = {round(b / a, 6) for a, b in itertools.pairwise(values)}
                assert ratios <= {2.0, 2.5, 10.0}, logged  # 1-2-5 or decades, never linear steps
                drawn = page.eval_on_selector(
                    "#chart", "e => e.querySelector('.loss').points.length"
                )
                assert drawn == 30
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-log.png"))

                icon = page.eval_on_selector("link[rel=icon]", "e => e.href")
                answer = client.get(icon)
                assert answer.status_code == 200 and answer.headers["content-type"].startswith(
                    "image/svg+xml"
                )
                assert client.get("/favicon.ico").status_code == 200
                assert [f for f in failed if f.startswith("404")] == []
                assert csp_violations(page) == []
            finally:
                browser.close()
    assert outside == []


def test_compare_overlays_the_ticked_runs_with_a_legend(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        runs = [_finished_run(client, "fast-lr", 1.0), _finished_run(client, "slow-lr", 0.1)]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page, failed = _open(browser, server, outside)
                for run in runs:
                    tick = page.locator(f'#runs tbody tr[data-run-id="{run["id"]}"] input.tick')
                    tick.wait_for(timeout=30_000)
                    tick.check()
                page.wait_for_function(
                    "() => document.querySelector('#compare-chart').dataset.curves == 2",
                    timeout=30_000,
                )
                assert page.locator("#run-panel").is_hidden()  # ticking does not select
                drawn = page.eval_on_selector_all(
                    "#compare-chart path.curve", "ps => ps.map(p => p.dataset.runId)"
                )
                assert drawn == [r["id"] for r in runs]
                legend = _texts(page, "#compare-legend li .run-name")
                assert legend == ["fast-lr", "slow-lr"]
                assert len(_texts(page, "#compare-chart .tick-y")) >= 3
                differing = _texts(page, "#compare-fields tbody th")
                assert "optimizer.learning_rate" in differing
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-compare.png"), full_page=True)
                linear = _texts(page, "#compare-chart .tick-y")
                page.check("#compare-log")
                page.wait_for_function(
                    "() => document.querySelector('#compare-chart').dataset.log === 'true'"
                )
                assert _texts(page, "#compare-chart .tick-y") != linear
                assert page.locator("#compare-chart path.curve").count() == 2
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-compare-log.png"), full_page=True)
                # Unticking one leaves one curve.
                page.locator(f'#runs tbody tr[data-run-id="{runs[1]["id"]}"] input.tick').uncheck()
                page.wait_for_function(
                    "() => document.querySelector('#compare-chart').dataset.curves == 1",
                    timeout=30_000,
                )
                assert _texts(page, "#compare-legend li .run-name") == ["fast-lr"]
                assert [f for f in failed if f.startswith("404")] == []
                assert csp_violations(page) == []
                if not _has_route("/v1/sweeps"):
                    assert page.locator("#view-sweeps").is_hidden()
            finally:
                browser.close()
    assert outside == []


SWEEP_PARAMETERS = {
    "optimizer.learning_rate": {"log_uniform": [0.05, 2.0]},
    "batch_size": {"choice": [2, 4]},
}


@pytest.mark.skipif(not _has_route("/v1/sweeps"), reason="the sweeps API is not served yet")
def test_sweep_view_lists_trials_and_scatters_the_objective(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
        dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
        body = {
            "name": "xor-sweep",
            "network": XOR_NETWORK,
            "dataset_id": dataset["id"],
            "config": {"loss": "binary_cross_entropy", "epochs": 60, "seed": 1},
            "parameters": SWEEP_PARAMETERS,
            "method": "random",
            "max_trials": 4,
            "parallelism": 2,
            "objective": {"metric": "loss", "mode": "min"},
            "seed": 5,
        }
        response = client.post("/v1/sweeps", json=body)
        assert response.status_code in (200, 201, 202), response.text
        sweep_id = response.json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
            if sweep["status"] in TERMINAL:
                break
            time.sleep(0.5)
        assert sweep["status"] == "succeeded", sweep
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page, failed = _open(browser, server, outside)
                page.locator("#view-sweeps").wait_for(state="visible", timeout=30_000)
                page.click("#view-sweeps")
                row = page.locator(f'#sweeps tbody tr[data-sweep-id="{sweep_id}"]')
                row.wait_for(timeout=30_000)
                row.click()
                page.wait_for_function(
                    "() => document.querySelector('#trials').dataset.loaded === 'true'",
                    timeout=30_000,
                )
                trials = sweep["trials"]
                shown = page.eval_on_selector_all(
                    "#trials tbody tr",
                    "rows => rows.map(r => Array.from(r.children, c => c.textContent))",
                )
                assert [r[0] for r in shown] == [str(t["number"]) for t in trials]
                assert [r[3] for r in shown] == [t["status"] for t in trials]
                assert all(t["run_id"] in r[1] for r, t in zip(shown, trials, strict=True))
                options = _texts(page, "#sweep-param option")
                assert options == list(SWEEP_PARAMETERS)
                scored = [t for t in trials if t["objective"] is not None]
                chart = page.locator("#sweep-chart")
                assert chart.get_attribute("data-dots") == str(len(scored))
                assert page.locator("#sweep-chart circle.trial").count() == len(scored)
                first = _texts(page, "#sweep-chart .tick-x")
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-sweep.png"), full_page=True)
                page.select_option("#sweep-param", "batch_size")
                page.wait_for_function(
                    "() => document.querySelector('#sweep-chart').dataset.param === 'batch_size'"
                )
                ticks = _texts(page, "#sweep-chart .tick-x")
                assert ticks != first and set(ticks) <= {"2", "3", "4", "2.5", "3.5"}
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-sweep-batch.png"), full_page=True)
                assert [f for f in failed if f.startswith("404")] == []
                assert csp_violations(page) == []
            finally:
                browser.close()
    assert outside == []
