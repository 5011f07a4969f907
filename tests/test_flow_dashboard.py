"""Flow control on the dashboard and its JSON API, in a real browser (as tests/test_dashboard_browser.py,
whose browser it uses): the listeners page shows a listener's limits, what is in use and what
waits, and updates them live as jobs finish."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from litestar import Litestar
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_dashboard_browser import browser, wait_for  # noqa: F401 - the fixture

from taskemit import Emitter, Settings, listener
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.store.redis_server import free_port

release = threading.Event()


@listener("export_due", name="shop:export", concurrency=1, rate="50/s", burst=2)
async def export(n: int) -> None:
    await asyncio.to_thread(release.wait, 20)


@pytest.fixture
def server(taskemit_settings: Settings) -> Iterator[tuple[str, Settings]]:
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False})
    config = TaskEmitConfig(
        listeners=[export],
        settings=settings,
        run_workers_in_app=True,
        dashboard_path="/taskemit",
        guards=[],
        csrf_secret="a browser test secret, 32+ chars",
        refresh_interval=0.3,
    )
    app = Litestar([], plugins=[TaskEmitPlugin(config)])
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    release.clear()
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        release.set()
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


def test_the_listeners_page_shows_limits_in_use_and_waiting(
    server: tuple[str, Settings],
    browser: WebDriver,  # noqa: F811
) -> None:
    url, settings = server

    async def emit() -> None:
        async with Emitter([export], settings) as emitter:
            for n in range(3):
                await emitter.publish("export_due", n=n)

    asyncio.run(emit())
    with httpx.Client(base_url=url) as client:
        deadline = time.monotonic() + 10
        while True:
            (row,) = [r for r in client.get("/taskemit/api/listeners").json() if r["listener"] == "shop:export"]
            if row["in_use"].startswith("1/1 running"):
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.05)
        assert row["limits"] == "1 at once, 50/s (burst 2)" and row["waiting"] == 2
    browser.get(f"{url}/taskemit/listeners")

    def cells(driver: WebDriver) -> str:
        return str(driver.find_element(By.CSS_SELECTOR, "table[data-columns]").text)

    wait_for(browser, "the limits", lambda d: "1 at once, 50/s (burst 2)" in cells(d) and "1/1 running" in cells(d))
    browser.execute_script("window.notReloaded = true")
    release.set()  # the jobs finish: the page shows the slot free and nothing waiting, without a reload
    wait_for(browser, "the slot free", lambda d: "0/1 running" in cells(d))
    assert browser.execute_script("return window.notReloaded") is True
    with httpx.Client(base_url=url) as client:
        page = client.get("/taskemit/listener", params={"name": "shop:export"}).text
        assert "flow control" in page and "1 at once, 50/s (burst 2)" in page
