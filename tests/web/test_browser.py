"""The admin and the API docs in a real browser: Debian's Chromium driven by Playwright.

The app runs as users run it (`agora serve` on a SQLite file, migrated at start) with a
superuser made by `agora users create-superuser`. No browser is ever downloaded: without
/usr/bin/chromium these tests are skipped, unless AGORA_REQUIRE_BROWSER=1 (CI), where they
fail. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 10_000
USERNAME, EMAIL, PASSWORD = "root_admin", "root@example.com", "browser-test-password"

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("AGORA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AGORA_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`agora serve` on a free port with a migrated SQLite file and one superuser."""
    tmp = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env |= {
        "AGORA_ENV": "test",
        "AGORA_DATABASE_URL": f"sqlite:///{tmp / 'browser.db'}",
        "AGORA_PASSWORD_HASH_MEMORY_KIB": "64",  # cheap Argon2: test settings only
        "AGORA_PASSWORD_HASH_TIME_COST": "1",
        "AGORA_ACCESS_LOG": "false",
    }
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agora", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            assert time.monotonic() < deadline, "agora serve did not start in 30 s"
            time.sleep(0.2)
        create = ["users", "create-superuser", "--email", EMAIL, "--username", USERNAME]
        subprocess.run(
            [sys.executable, "-m", "agora", *create],
            env=env | {"AGORA_SUPERUSER_PASSWORD": PASSWORD},
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page that may only talk to the server; other requests are refused and listed."""
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith(
            "data:"
        ):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    try:
        yield context.new_page(), outside
    finally:
        context.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_admin_login_list_and_open_a_user(page: tuple[Page, list[str]]) -> None:
    tab, outside = page
    tab.goto("/admin/")
    assert tab.url.endswith("/admin/login")
    tab.fill("input[name=username]", USERNAME)
    tab.fill("input[name=password]", PASSWORD + "-wrong")
    tab.click("button[type=submit]")
    expect(tab.locator("body")).to_contain_text("Invalid")
    assert tab.url.endswith("/admin/login")

    tab.fill("input[name=username]", EMAIL)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url("**/admin/")
    _shot(tab, "admin-home")

    tab.goto("/admin/user/list")
    expect(tab.locator("table")).to_contain_text(USERNAME)
    _shot(tab, "admin-users")
    tab.locator("a[href*='/admin/user/details/']").first.click()
    tab.wait_for_url("**/admin/user/details/*")
    expect(tab.locator("body")).to_contain_text(EMAIL)
    content = tab.content()
    assert "$argon2" not in content
    assert "hashed" not in content.lower()
    _shot(tab, "admin-user-details")
    assert outside == []


def test_swagger_try_it_out(page: tuple[Page, list[str]]) -> None:
    tab, outside = page
    tab.goto("/docs")
    operation = tab.locator("#operations-health-live_health_live_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    result = operation.locator(".live-responses-table tr.response")
    expect(result.locator(".response-col_status")).to_have_text("200")
    expect(result.locator(".response-col_description")).to_contain_text('"status": "ok"')
    _shot(tab, "docs-try-it-out")
    assert outside == []


def test_redoc_renders(page: tuple[Page, list[str]]) -> None:
    tab, outside = page
    tab.goto("/redoc")
    expect(tab.locator("h1").first).to_contain_text("Agora")
    expect(tab.get_by_text("Liveness: the process answers").first).to_be_visible()
    _shot(tab, "redoc")
    assert outside == []


def test_landing_page(page: tuple[Page, list[str]]) -> None:
    tab, outside = page
    tab.goto("/")
    expect(tab.locator("#database")).to_have_text("sqlite (aiosqlite)")
    tab.get_by_role("link", name="/docs").click()
    tab.wait_for_url("**/docs")
    expect(tab.locator(".swagger-ui .title").first).to_contain_text("Agora")
    _shot(tab, "landing-to-docs")
    assert outside == []
