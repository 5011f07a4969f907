"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through the
system's chromedriver (nothing is downloaded). The app runs under uvicorn with a worker in its
lifespan. An event is emitted, seen with its jobs, its dead letter opened and replayed, and the
replayed job seen complete without reloading the page.

With TASKEMIT_SCREENSHOTS=1, a screenshot of each page is written to docs/images/dashboard-<page>.png.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.params import Parameter

from taskemit import Attempt, Backoff, Emitter, Settings, cron, listener
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin
from taskemit.store.redis_server import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
SCREENSHOTS = os.environ.get("TASKEMIT_SCREENSHOTS") == "1"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver", allow_module_level=True
    )

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

carrier_down = threading.Event()


@listener("order_placed", name="shop:send_receipt")
async def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"


@listener("order_placed", name="shop:notify_carrier")
async def notify_carrier(order_id: int, email: str) -> None:
    if carrier_down.is_set():
        raise ConnectionRefusedError("acme API refused the connection")


@listener("order_placed", name="shop:update_crm", max_tries=3, backoff=Backoff.fixed(0.3))
async def update_crm(order_id: int, email: str, attempt: Attempt) -> None:
    if attempt.number == 1:
        raise ConnectionError("crm.internal: connection reset by peer")


@listener("sales_report_due", name="shop:sales_report")
async def sales_report(period: str) -> None: ...


@post("/orders/{order_id:int}")
async def place_order(order_id: Annotated[int, Parameter()], emitter: NamedDependency[Emitter]) -> str:
    receipt = await emitter.publish("order_placed", order_id=order_id, email=f"customer{order_id}@example.com")
    assert receipt is not None
    return receipt.event_uuid


@pytest.fixture
def server(taskemit_settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a thread; yields its URL."""
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "max_tries": 1, "idle_poll": 0.2})
    config = TaskEmitConfig(
        listeners=[send_receipt, notify_carrier, update_crm, sales_report],
        crons=[
            cron("0 6 * * *", "sales_report_due", period="day", name="daily sales", tz="Europe/Paris"),
            cron("0 7 * * 1", "sales_report_due", period="week", name="weekly sales", tz="Europe/Paris"),
        ],
        settings=settings,
        run_workers_in_app=True,
        dashboard_path="/taskemit",
        guards=[],  # open: a test app on localhost
        csrf_secret="a browser test secret, 32+ chars",
        refresh_interval=0.3,
    )
    app = Litestar([place_order], plugins=[TaskEmitPlugin(config)])
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    # a path to the driver: Selenium Manager (which would download one) does not run
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


def wait_for(driver: WebDriver, what: str, check: Any, timeout: float = 10) -> Any:
    """Until ``check(driver)`` is truthy; the page re-renders its tables as it refreshes, so an
    element found a moment ago may be gone: look again."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored)
    return wait.until(check, f"waiting for {what}")


def click(driver: WebDriver, what: str, by: str, value: str) -> None:
    def clicked(d: WebDriver) -> bool:
        d.find_element(by, value).click()
        return True

    wait_for(driver, what, clicked)


_RENDERED = """
const table = document.querySelector(arguments[0]);
return [table.innerText,
        [...table.querySelectorAll("a")].map(a => [a.href, a.title]),
        [...table.querySelectorAll("form")].map(f => [f.action, f.dataset.confirm || "",
                                                       f.querySelector("input").value])];
"""


def assert_script_renders_as_the_server(driver: WebDriver, table: str) -> None:
    """The page script re-renders ``table`` from the JSON API exactly as the server rendered it."""
    server_side = driver.execute_script(_RENDERED, table)
    driver.execute_script(
        "const t = document.querySelector(arguments[0]); t.tBodies[0].dataset.old = 'yes';"
        "t.closest('[data-src]').dataset.last = '';",  # the next refresh re-renders
        table,
    )
    wait_for(
        driver,
        "a re-render",
        lambda d: not d.execute_script(f"return document.querySelector({table!r}).tBodies[0].dataset.old"),
    )
    assert driver.execute_script(_RENDERED, table) == server_side


def row_text(driver: WebDriver, link_text: str) -> str:
    return str(driver.find_element(By.LINK_TEXT, link_text).find_element(By.XPATH, "./ancestor::tr").text)


def screenshot(driver: WebDriver, page: str) -> None:
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(IMAGES / f"dashboard-{page}.png"))


def job_status(driver: WebDriver, listener_name: str) -> str:
    for row in driver.find_elements(By.CSS_SELECTOR, "table[data-rows=jobs] tbody tr"):
        cells = row.find_elements(By.TAG_NAME, "td")
        if cells and cells[0].text == listener_name:
            return str(cells[2].text)
    return ""


def test_events_dead_letter_and_replay_in_a_browser(server: str, browser: WebDriver) -> None:
    with httpx.Client(base_url=server) as client:
        for order_id in (1001, 1002):  # complete, once the CRM update's second attempt ran
            done = client.post(f"/orders/{order_id}").text
        while not client.get(f"/taskemit/api/events/{done}").json()["done"]:
            time.sleep(0.02)
        carrier_down.set()
        event = client.post("/orders/1003").text

    # the events page shows the event with its jobs, and follows them as they finish
    browser.get(f"{server}/taskemit/events")
    outcome = wait_for(
        browser,
        "the event's jobs to finish",
        lambda d: "update_crm=complete" in (text := row_text(d, event)) and "notify_carrier=failed" in text and text,
    )
    assert "send_receipt=complete" in outcome and " failed " in outcome
    screenshot(browser, "events")

    # the event: its listener jobs and their attempts
    click(browser, "the event's link", By.LINK_TEXT, event)
    wait_for(browser, "the event page", lambda d: job_status(d, "shop:notify_carrier") == "failed")
    assert job_status(browser, "shop:send_receipt") == "complete"
    assert "#1 failed builtins.ConnectionError: crm.internal" in browser.page_source
    screenshot(browser, "event")

    browser.get(f"{server}/taskemit/dead")
    wait_for(browser, "the dead letter", lambda d: "acme API refused the connection" in d.page_source)
    screenshot(browser, "dead-letters")

    # the dead letter, from the event page; replayed, it runs again and completes
    browser.get(f"{server}/taskemit/events/{event}")
    click(browser, "the dead letter link", By.LINK_TEXT, "dead letter")
    wait_for(browser, "the dead letter page", lambda d: d.find_element(By.TAG_NAME, "h1").text == "Dead letter")
    assert "attempts exhausted" in browser.page_source and "customer1003@example.com" in browser.page_source
    screenshot(browser, "dead-letter")
    carrier_down.clear()
    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    wait_for(browser, "the notice", lambda d: "Replayed" in d.find_element(By.CLASS_NAME, "notice").text)
    assert browser.current_url.startswith(f"{server}/taskemit/events/{event}")
    # no reload from here on: the page refreshes itself from the JSON API
    browser.execute_script("window.notReloaded = true")
    wait_for(browser, "the replayed job to complete", lambda d: job_status(d, "shop:notify_carrier") == "complete")
    assert browser.execute_script("return window.notReloaded") is True
    assert "replayed as" in browser.page_source
    screenshot(browser, "replayed")
    browser.refresh()
    assert_script_renders_as_the_server(browser, "table[data-rows=jobs]")
    browser.get(f"{server}/taskemit/events")
    assert_script_renders_as_the_server(browser, "table[data-rows=items]")

    browser.get(f"{server}/taskemit/listeners")
    wait_for(browser, "the listeners", lambda d: "shop:notify_carrier" in d.page_source)
    screenshot(browser, "listeners")
    browser.get(f"{server}/taskemit/workers")
    wait_for(browser, "the worker", lambda d: "default" in d.find_element(By.CSS_SELECTOR, "table[data-rows='']").text)
    screenshot(browser, "workers")
    browser.get(f"{server}/taskemit/schedules")
    wait_for(browser, "the schedules", lambda d: "weekly sales" in d.page_source and "daily sales" in d.page_source)
    screenshot(browser, "schedules")


@listener("load_order", name="load:charge", max_tries=1)
async def charge(n: int) -> None:
    if n % 10 == 0:  # 30 of 300 fail on purpose
        raise ValueError(f"card declined for order {n}")


@pytest.fixture
def load_server(taskemit_settings: Settings) -> Iterator[tuple[str, Settings]]:
    """An app whose in-app worker runs ``charge``, writing its history every second."""
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "idle_poll": 0.2, "history_interval": 1.0})
    config = TaskEmitConfig(
        listeners=[charge],
        settings=settings,
        run_workers_in_app=True,
        dashboard_path="/taskemit",
        guards=[],
        csrf_secret="a browser test secret, 32+ chars",
        refresh_interval=0.5,
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
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


async def _load(settings: Settings) -> list[str]:
    async with Emitter([charge], settings) as emitter:
        receipts = [await emitter.publish("load_order", n=n) for n in range(300)]
    return [receipt.event_uuid for receipt in receipts if receipt is not None]


def test_the_overview_charts_a_load_of_300_jobs_with_30_failures(
    load_server: tuple[str, Settings], browser: WebDriver
) -> None:
    import asyncio

    server, settings = load_server
    uuids = asyncio.run(_load(settings))
    assert len(uuids) == 300
    # each job's minute, from its outcome on the event record: where the charts must count it
    expected: dict[int, list[int]] = {}
    with httpx.Client(base_url=server) as client:
        for event_uuid in uuids:
            while not (event := client.get(f"/taskemit/api/events/{event_uuid}").json())["done"]:
                time.sleep(0.05)
            (job,) = event["jobs"]
            minute = int(job["finished"] // 60) * 60
            counts = expected.setdefault(minute, [0, 0])
            counts[0 if job["status"] == "complete" else 1] += 1
        assert sum(c[0] for c in expected.values()) == 270 and sum(c[1] for c in expected.values()) == 30

        # the charts' data, through the JSON API: those counts, in those minute buckets
        def charted() -> dict[int, list[int]]:
            points = client.get("/taskemit/api/history", params={"span": "1h"}).json()["points"]
            return {p["at"]: [p["succeeded"], p["failed"]] for p in points if p["succeeded"] or p["failed"]}

        deadline = time.monotonic() + 15  # the worker writes its tallies every history_interval
        while charted() != expected:
            assert time.monotonic() < deadline, f"charted {charted()}, expected {expected}"
            time.sleep(0.2)
        history = client.get("/taskemit/api/history", params={"span": "1h"}).json()
        (failure,) = history["failures"]
        assert (failure["error_type"], failure["count"]) == ("builtins.ValueError", 30)
        for span, points in (("24h", 288), ("30d", 720)):
            longer = client.get("/taskemit/api/history", params={"span": span}).json()
            assert len(longer["points"]) == points
            assert sum(p["succeeded"] for p in longer["points"]) == 270
            assert sum(p["failed"] for p in longer["points"]) == 30

    # the page renders: five charts with their lines, and refreshes itself without a reload
    browser.get(f"{server}/taskemit/overview")
    wait_for(browser, "the charts", lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.chart")) == 5)
    browser.execute_script("window.notReloaded = true")
    wait_for(browser, "a refresh", lambda d: "updated" in d.find_element(By.CLASS_NAME, "live-state").text)
    assert browser.execute_script("return window.notReloaded") is True
    lines = browser.execute_script(
        "return [...document.querySelectorAll('svg.chart')].map(s => s.querySelectorAll('path, circle').length)"
    )
    assert all(count > 0 for count in lines), lines
    size = browser.execute_script(
        "const r = document.querySelector('svg.chart').getBoundingClientRect(); return [r.width, r.height]"
    )
    assert size[0] > 300 and size[1] > 80  # laid out, not collapsed
    listeners = browser.find_element(By.CSS_SELECTOR, "table[data-rows=listeners]").text
    assert "load:charge" in listeners and "270" in listeners and "30" in listeners
    assert "card declined for order" in browser.find_element(By.CSS_SELECTOR, "table[data-rows=failures]").text
    browser.set_window_size(1400, 1250)
    screenshot(browser, "overview")
    click(browser, "the listener's link", By.LINK_TEXT, "load:charge")
    wait_for(browser, "the listener page", lambda d: d.find_element(By.TAG_NAME, "h1").text == "Listener load:charge")
    assert "Retries and limits" in browser.page_source and len(browser.find_elements(By.CSS_SELECTOR, "svg.chart")) == 5
    screenshot(browser, "listener")
