"""The docs page in a real browser, with the network off: it renders and "Try it out" works.

Uses Debian's chromium through Playwright's Python package (``executable_path``;
no browser download). Without chromium the test is skipped, unless
``BACKPROP_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from tests.support.server import ServerProcess, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT_DIR = Path(os.environ.get("BACKPROP_TEST_OUTPUT", "test-output")) / "browser"
# Offline: every host but loopback fails to resolve, so a CDN asset could not load.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

pytestmark = pytest.mark.browser


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("BACKPROP_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""
"""An init script: the page records every Content-Security-Policy violation."""


def csp_violations(page: Page) -> list[str]:
    """The CSP violations the page recorded (see :data:`CSP_VIOLATIONS`)."""
    violations: list[str] = page.evaluate("window.__cspViolations")
    return violations


def keep_local(route: Route, local: str, outside: list[str]) -> None:
    """Let requests to the server (and in-page blob/data URLs) through; record the rest."""
    url = route.request.url
    if url.startswith((local, "blob:", "data:")):
        route.continue_()
    else:
        outside.append(url)
        route.abort()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("docs-browser")) as started:
        yield started


def test_docs_page_renders_offline_and_try_it_out_creates_a_network(server: ServerProcess) -> None:
    require_chromium()

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.route("**/*", lambda route: keep_local(route, server.url, outside))
            page.add_init_script(CSP_VIOLATIONS)
            page.goto(f"{server.url}/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 15, "the operations did not render"

            operation = page.locator(
                ".opblock-post", has=page.locator('[data-path="/v1/networks"]')
            )
            operation.locator(".opblock-summary").first.click()
            operation.locator("button.try-out__btn").click()
            body = operation.locator("textarea.body-param__text").input_value()
            assert '"input_size"' in body and "sigmoid" in body, "no prefilled XOR example"
            operation.locator("button.execute").click()
            status = operation.locator(".live-responses-table .response .response-col_status")
            status.first.wait_for(timeout=30_000)
            assert status.first.inner_text().strip() == "201"
            response_body = operation.locator(".live-responses-table .microlight").first
            assert '"n_parameters"' in response_body.inner_text()
            page.screenshot(path=str(OUTPUT_DIR / "docs.png"))
            operation.screenshot(path=str(OUTPUT_DIR / "docs-try-it-out-201.png"))
            assert csp_violations(page) == []  # Swagger UI needs nothing the policy blocks

            page.goto(f"{server.url}/redoc", wait_until="networkidle")
            page.get_by_role("heading", name="Create Network").first.wait_for(timeout=30_000)
            assert page.locator("[data-section-id]").count() >= 15
            page.screenshot(path=str(OUTPUT_DIR / "redoc.png"))
        finally:
            browser.close()
    assert outside == [], f"the docs pages sent requests to other hosts: {outside}"
