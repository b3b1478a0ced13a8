"""The dashboard in Debian's chromium, offline, with an API key: a run started by
the test appears, its live chart gains points while it trains, Pause and Resume
on the page pause and resume it, and Cancel cancels it. Screenshots go to
test-output/browser/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.browser.test_docs_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CSP_VIOLATIONS,
    OUTPUT_DIR,
    csp_violations,
    keep_local,
)
from tests.browser.test_docs_page import require_chromium as require_chromium
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.browser

KEY = "dashboard-key"
ENV = {"BACKPROP_API_KEYS": KEY, "BACKPROP_WORKERS": "1", "BACKPROP_FLUSH_SECONDS": "0.1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("dashboard-browser"), ENV) as started:
        yield started


def _start_run(client: httpx.Client) -> str:
    network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
    body = {
        "network_id": network,
        "dataset_id": dataset["id"],
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
        "epochs": 5_000_000,
        "history_every": 500,
        "seed": 1,
    }
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_dashboard_shows_a_live_run_and_cancels_it(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        run_id = _start_run(client)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", lambda route: keep_local(route, server.url, outside))
                page.add_init_script(CSP_VIOLATIONS)
                loaded = page.goto(server.url + "/")
                assert loaded is not None
                policy = loaded.headers["content-security-policy"]
                assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
                page.fill("#api-key", KEY)
                page.click("#key-form button[type=submit]")
                row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
                row.wait_for(timeout=30_000)
                row.click()
                chart = page.locator("#chart")
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.points > 2", timeout=60_000
                )
                first = int(chart.get_attribute("data-points") or 0)
                time.sleep(1.5)
                page.wait_for_function(
                    f"() => document.querySelector('#chart').dataset.points > {first}",
                    timeout=30_000,
                )
                # Read both in one go: another event may be drawn between two reads.
                second, drawn = page.eval_on_selector(
                    "#chart",
                    "e => [Number(e.dataset.points), e.querySelector('.loss').points.length]",
                )
                assert second > first
                assert drawn == second
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-training.png"))
                assert page.locator("#run-status").inner_text() == "running"

                page.click("#pause")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'paused'",
                    timeout=30_000,
                )
                assert client.get(f"/v1/runs/{run_id}").json()["status"] == "paused"
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-paused.png"))
                page.wait_for_selector("#resume:not([disabled])", timeout=10_000)
                page.click("#resume")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'running'",
                    timeout=30_000,
                )
                resumed = int(chart.get_attribute("data-points") or 0)
                page.wait_for_function(
                    f"() => document.querySelector('#chart').dataset.points > {resumed}",
                    timeout=30_000,
                )

                page.click("#cancel")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'cancelled'",
                    timeout=30_000,
                )
                assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
                page.wait_for_function(
                    "() => document.querySelector('#stream-state').textContent === '(ended)'",
                    timeout=30_000,
                )
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-cancelled.png"))
                # The page did everything above within its tight policy.
                assert csp_violations(page) == []
            finally:
                browser.close()
    assert outside == [], f"the dashboard sent requests to other hosts: {outside}"


def test_dashboard_draws_the_lr_column_of_a_scheduled_run(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
        dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
        body = {
            "network_id": network,
            "dataset_id": dataset["id"],
            "loss": "mse",
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "lr_schedule": {"name": "exponential", "gamma": 0.99},
            "epochs": 400,
            "history_every": 20,
            "seed": 1,
        }
        run_id = client.post("/v1/runs", json=body).json()["id"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", lambda route: keep_local(route, server.url, outside))
                page.goto(server.url + "/")
                page.fill("#api-key", KEY)
                page.click("#key-form button[type=submit]")
                row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
                row.wait_for(timeout=30_000)
                row.click()
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.lrPoints >= 20", timeout=60_000
                )
                drawn = page.eval_on_selector("#chart", "e => e.querySelector('.lr').points.length")
                assert drawn >= 20
                assert page.locator("#lr-legend").is_visible()
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-lr.png"))
            finally:
                browser.close()
    assert outside == [], f"the dashboard sent requests to other hosts: {outside}"
