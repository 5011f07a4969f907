"""The dashboard and its JSON API, through Litestar's test client, on a real Redis with a real
worker running in the app: what each page and endpoint shows, the guards, CSRF, the actions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.testing import AsyncTestClient

from taskemit import Emitter, Settings, listener
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin

ADMIN = {"x-role": "admin"}
VIEWER = {"x-role": "viewer"}
failing = {"ship": True}


def admins(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.headers.get("x-role") != "admin":
        raise PermissionDeniedException("admins only")


def viewers(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.headers.get("x-role") not in ("admin", "viewer"):
        raise PermissionDeniedException("viewers only")


@listener("order_placed", name="shop:confirm")
async def confirm(order_id: int, **kwargs: Any) -> str:
    return f"order {order_id} confirmed"


@listener("order_placed", name="shop:ship")
async def ship(order_id: int, carrier: str = "acme", **kwargs: Any) -> None:
    if failing["ship"]:
        raise ConnectionRefusedError(f"<b>{carrier}</b> refused the connection")


@listener("report_due", name="shop:report", queue="parked")  # no worker serves this queue
async def report(day: str) -> None: ...


LISTENERS = [confirm, ship, report]


def make_app(settings: Settings, **options: Any) -> Litestar:
    app_options = options.pop("app", {})
    config: dict[str, Any] = {
        "listeners": LISTENERS,
        "settings": settings,
        "run_workers_in_app": True,
        "worker_options": {"queues": ["default"]},
        "dashboard_path": "/taskemit",
        "guards": [admins],
        "read_guards": [viewers],
        "csrf_secret": "a test secret of thirty-two chars",
        "refresh_interval": 0.5,
    }
    config.update(options)
    return Litestar([], plugins=[TaskEmitPlugin(TaskEmitConfig(**config))], **app_options)


@pytest.fixture
def settings(taskemit_settings: Settings) -> Settings:
    failing["ship"] = True
    # idle_poll: a job emitted while the worker subscribes to its wake channel waits for the next look
    return taskemit_settings.model_copy(update={"drain_on_exit": False, "max_tries": 1, "idle_poll": 0.2})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(make_app(settings)) as client:
        yield client


async def publish(client: AsyncTestClient[Litestar], event: str, **kwargs: Any) -> str:
    emitter = client.app.event_emitter.emitter  # type: ignore[attr-defined]
    assert isinstance(emitter, Emitter)
    receipt = await emitter.publish(event, **kwargs)
    assert receipt is not None
    return receipt.event_uuid


async def until(client: AsyncTestClient[Litestar], path: str, check: Callable[[Any], bool]) -> Any:
    for _ in range(500):
        data = (await client.get(path, headers=VIEWER)).json()
        if check(data):
            return data
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never satisfied the check; last: {data}")


def event_done(data: Any) -> bool:
    return bool(data["done"])


async def csrf_token(client: AsyncTestClient[Litestar]) -> str:
    await client.get("/taskemit/events", headers=VIEWER)
    return str(client.cookies["taskemit_csrftoken"])


async def test_the_dashboard_is_off_unless_configured(settings: Settings) -> None:
    app = Litestar([], plugins=[TaskEmitPlugin(TaskEmitConfig(listeners=LISTENERS, settings=settings))])
    async with AsyncTestClient(app) as client:
        for path in ("/taskemit", "/taskemit/events", "/taskemit/api/events"):
            assert (await client.get(path)).status_code == 404
    assert not [path for path in app.openapi_schema.to_schema()["paths"] if "taskemit" in path]


async def test_views_take_the_read_guards_and_actions_the_guards(client: AsyncTestClient[Litestar]) -> None:
    reads = (
        "/taskemit/events",
        "/taskemit/dead",
        "/taskemit/overview",
        "/taskemit/overview/live",
        "/taskemit/api/events",
        "/taskemit/api/workers",
        "/taskemit/api/history",
    )
    for path in reads:
        assert (await client.get(path)).status_code == 403, path  # no role
        assert (await client.get(path, headers=VIEWER)).status_code == 200, path
        assert (await client.get(path, headers=ADMIN)).status_code == 200, path
    token = await csrf_token(client)
    response = await client.post("/taskemit/api/dead/purge", headers={**VIEWER, "x-csrftoken": token})
    assert response.status_code == 403 and "admins only" in response.text


async def test_actions_need_the_csrf_token(client: AsyncTestClient[Litestar]) -> None:
    event = await publish(client, "order_placed", order_id=1)
    data = await until(client, f"/taskemit/api/events/{event}", event_done)
    dead_job = next(job["job_id"] for job in data["jobs"] if job["status"] == "failed")
    token = await csrf_token(client)
    # an admin without the token, or with a forged one, is refused: nothing is replayed
    for headers in (ADMIN, {**ADMIN, "x-csrftoken": "0" * 128}):
        response = await client.post(f"/taskemit/api/dead/{dead_job}/replay", headers=headers)
        assert response.status_code == 403 and "CSRF" in response.text
    response = await client.post(f"/taskemit/dead/{dead_job}/replay", headers=ADMIN)  # the form post, no token
    assert response.status_code == 403
    assert (await client.get(f"/taskemit/api/dead/{dead_job}", headers=VIEWER)).status_code == 200
    # with it, the dead letter is replayed and the worker in the app runs it again
    failing["ship"] = False
    response = await client.post(f"/taskemit/api/dead/{dead_job}/replay", headers={**ADMIN, "x-csrftoken": token})
    assert response.status_code == 200
    replayed = response.json()
    assert (replayed["job_id"], replayed["event_uuid"]) == (dead_job, event)
    data = await until(client, f"/taskemit/api/events/{event}", event_done)
    assert {job["listener"]: job["status"] for job in data["jobs"]} == {
        "shop:confirm": "complete",
        "shop:ship": "complete",
    }
    ship_job = next(job for job in data["jobs"] if job["listener"] == "shop:ship")
    assert ship_job["job_id"] == replayed["new_job_id"]
    # the new job's history carries the dead one's attempt, the replay, and its own attempt
    assert [(a["status"], a["replay_of"]) for a in ship_job["history"]] == [
        ("failed", None),
        ("replayed", dead_job),
        ("complete", None),
    ]
    assert (await client.get(f"/taskemit/api/dead/{dead_job}", headers=VIEWER)).status_code == 404


async def test_an_event_emitted_by_a_listener_links_to_its_cause(client: AsyncTestClient[Litestar]) -> None:
    parent = await publish(client, "order_placed", order_id=7)
    emitter = client.app.event_emitter.emitter  # type: ignore[attr-defined]
    receipt = await emitter.caused_by(parent).publish("report_due", day="friday")  # as a listener's Emitter does
    data = (await client.get(f"/taskemit/api/events/{receipt.event_uuid}", headers=VIEWER)).json()
    assert data["cause"] == parent
    html = (await client.get(f"/taskemit/events/{receipt.event_uuid}", headers=VIEWER)).text
    assert "caused by" in html and f'href="/taskemit/events/{parent}"' in html
    assert (await client.get(f"/taskemit/api/events/{parent}", headers=VIEWER)).json()["cause"] is None


async def test_events_page_and_api(client: AsyncTestClient[Litestar]) -> None:
    first = await publish(client, "order_placed", order_id=1, carrier="<script>alert(1)</script>")
    await until(client, f"/taskemit/api/events/{first}", event_done)
    failing["ship"] = False
    second = await publish(client, "order_placed", order_id=2)
    await until(client, f"/taskemit/api/events/{second}", event_done)
    parked = await publish(client, "report_due", day="monday")

    page = (await client.get("/taskemit/api/events", headers=VIEWER)).json()
    assert [(e["event_uuid"], e["status"]) for e in page["items"]] == [
        (parked, "queued"),
        (second, "complete"),
        (first, "failed"),
    ]
    failed = (await client.get("/taskemit/api/events?status=failed", headers=VIEWER)).json()
    assert [e["event_uuid"] for e in failed["items"]] == [first]
    reports = (await client.get("/taskemit/api/events?event_id=report_due", headers=VIEWER)).json()
    assert [e["event_uuid"] for e in reports["items"]] == [parked]
    paged = (await client.get("/taskemit/api/events?limit=2", headers=VIEWER)).json()
    rest = (await client.get(f"/taskemit/api/events?limit=2&cursor={paged['next_cursor']}", headers=VIEWER)).json()
    assert [e["event_uuid"] for e in paged["items"] + rest["items"]] == [parked, second, first]
    assert (await client.get("/taskemit/api/events?status=bogus", headers=VIEWER)).status_code == 400

    html = (await client.get("/taskemit/events", headers=VIEWER)).text
    for uuid in (first, second, parked):
        assert f'href="/taskemit/events/{uuid}"' in html
    assert 'data-src="/taskemit/api/events?limit=20"' in html  # refreshed live from the API
    assert "ship=failed" in html and "confirm=complete" in html
    assert 'name="csrf-token"' in html and "<script>alert(1)" not in html
    filtered = (await client.get("/taskemit/events?status=failed&event_id=order_placed", headers=VIEWER)).text
    assert first in filtered and second not in filtered and parked not in filtered

    html = (await client.get(f"/taskemit/events/{first}", headers=VIEWER)).text
    assert "shop:confirm" in html and "order 1 confirmed" in html
    # the listener's error, with markup in it, is shown as text
    assert "&lt;b&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;/b&gt; refused the connection" in html
    assert "<script>alert(1)" not in html
    assert re.search(r'href="/taskemit/dead/%7B[^"]+">dead letter</a>', html)
    html = (await client.get(f"/taskemit/events/{parked}", headers=VIEWER)).text
    assert "waiting: no live worker serves listener shop:report" in html and ">abort</button>" in html

    missing = await client.get("/taskemit/events/00000000-0000-4000-8000-000000000000", headers=VIEWER)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    missing = await client.get("/taskemit/api/events/00000000-0000-4000-8000-000000000000", headers=VIEWER)
    assert missing.status_code == 404 and missing.json()["status_code"] == 404


async def test_dead_letters_pages_and_form_actions(client: AsyncTestClient[Litestar]) -> None:
    events = [await publish(client, "order_placed", order_id=n, password="hunter2") for n in range(3)]
    for event in events:
        await until(client, f"/taskemit/api/events/{event}", event_done)
    dead = (await client.get("/taskemit/api/dead", headers=VIEWER)).json()["items"]
    assert len(dead) == 3 and {d["listener"] for d in dead} == {"shop:ship"}
    letter = (await client.get(f"/taskemit/api/dead/{dead[0]['job_id']}", headers=VIEWER)).json()
    assert letter["arguments"] == {
        "args": [],
        "kwargs": {"order_id": letter["arguments"]["kwargs"]["order_id"], "password": "[redacted]"},
    }
    assert letter["tries"] == 1 and letter["error"]["type"] == "builtins.ConnectionRefusedError"

    token = await csrf_token(client)
    html = (await client.get("/taskemit/dead", headers=VIEWER)).text
    assert html.count(f'name="_csrf_token" value="{token}"') == 3 + 2  # a replay per row, replay all, purge all
    html = (await client.get(f"/taskemit/dead/{dead[0]['job_id']}", headers=VIEWER)).text
    assert "[redacted]" in html and "hunter2" not in html and "attempts exhausted" in html

    # replay one from its page: back to its event, with a notice
    failing["ship"] = False
    form = {"_csrf_token": token}
    response = await client.post(
        f"/taskemit/dead/{dead[0]['job_id']}/replay", data=form, headers=ADMIN, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/taskemit/events/{dead[0]['event_uuid']}?notice=Replayed")
    notice = (await client.get(response.headers["location"], headers=VIEWER)).text
    assert f"Replayed {dead[0]['job_id']} as" in notice
    # replay every matching one (none match this listener), then purge the rest
    response = await client.post(
        "/taskemit/dead/replay?listener=shop:confirm", data=form, headers=ADMIN, follow_redirects=False
    )
    assert response.status_code == 303 and "Replayed+0+dead+letters" in response.headers["location"]
    response = await client.post(
        "/taskemit/dead/purge?listener=shop:ship", data=form, headers=ADMIN, follow_redirects=False
    )
    assert response.status_code == 303 and "Purged+2+dead+letters" in response.headers["location"]
    assert (await client.get("/taskemit/api/dead", headers=VIEWER)).json() == {"items": [], "next_cursor": None}
    replayed = await until(client, f"/taskemit/api/events/{dead[0]['event_uuid']}", event_done)
    assert replayed["status"] == "complete"


async def test_replay_all_and_purge_through_the_api(client: AsyncTestClient[Litestar]) -> None:
    for n in range(2):
        await until(client, f"/taskemit/api/events/{await publish(client, 'order_placed', order_id=n)}", event_done)
    headers = {**ADMIN, "x-csrftoken": await csrf_token(client)}
    failing["ship"] = False
    done = (await client.post("/taskemit/api/dead/replay?listener=shop:ship", headers=headers)).json()
    assert len(done["replayed"]) == 2 and done["skipped"] == []
    for item in done["replayed"]:
        await until(client, f"/taskemit/api/events/{item['event_uuid']}", event_done)
    assert (await client.post("/taskemit/api/dead/purge", headers=headers)).json() == {"purged": 0}


async def test_abort_a_waiting_job(client: AsyncTestClient[Litestar]) -> None:
    parked = await publish(client, "report_due", day="monday")
    (job,) = (await client.get(f"/taskemit/api/events/{parked}", headers=VIEWER)).json()["jobs"]
    assert job["status"] == "queued"
    token = await csrf_token(client)
    response = await client.post(
        f"/taskemit/events/{parked}/jobs/{job['job_id']}/abort",
        data={"_csrf_token": token},
        headers=ADMIN,
        follow_redirects=False,
    )
    assert response.status_code == 303 and "notice=Aborted" in response.headers["location"]
    assert (await client.get(f"/taskemit/api/jobs/{job['job_id']}", headers=VIEWER)).json()["status"] == "aborted"
    again = await client.post(f"/taskemit/api/jobs/{job['job_id']}/abort", headers={**ADMIN, "x-csrftoken": token})
    assert again.json() == {"job_id": job["job_id"], "outcome": "missing"}


async def test_listeners_workers_and_queues(client: AsyncTestClient[Litestar]) -> None:
    await until(client, f"/taskemit/api/events/{await publish(client, 'order_placed', order_id=1)}", event_done)
    await publish(client, "report_due", day="monday")
    workers = await until(client, "/taskemit/api/workers", lambda ws: len(ws) == 1)
    assert workers[0]["queues"] == ["default"] and "shop:confirm" in workers[0]["listeners"]
    listeners = {
        item["listener"]: item for item in (await client.get("/taskemit/api/listeners", headers=VIEWER)).json()
    }
    assert (listeners["shop:confirm"]["succeeded"], listeners["shop:confirm"]["workers"]) == (1, 1)
    # from the catalog its worker registered: the mode and the events it takes
    assert (listeners["shop:confirm"]["mode"], listeners["shop:confirm"]["events"]) == ("pool", ["order_placed"])
    assert (listeners["shop:ship"]["failed"], listeners["shop:ship"]["dead_letters"]) == (1, 1)
    assert (listeners["shop:report"]["queue"], listeners["shop:report"]["queued"]) == ("parked", 1)
    queues = {item["queue"]: item for item in (await client.get("/taskemit/api/queues", headers=VIEWER)).json()}
    assert queues["parked"] == {
        "queue": "parked",
        "queued": 1,
        "running": 0,
        "delayed": 0,
        "listeners": 1,
        "workers": 0,
    }
    assert queues["default"]["workers"] == 1 and queues["default"]["listeners"] == 2
    html = (await client.get("/taskemit/listeners", headers=VIEWER)).text
    assert "shop:report" in html and 'data-src="/taskemit/api/listeners"' in html
    html = (await client.get("/taskemit/workers", headers=VIEWER)).text
    assert workers[0]["worker_id"] in html and ">parked</td>" in html


async def test_the_json_api_is_in_the_openapi_schema(settings: Settings) -> None:
    schema = make_app(settings).openapi_schema.to_schema()
    paths = {path for path in schema["paths"] if path.startswith("/taskemit")}
    assert paths == {
        "/taskemit/api/events",
        "/taskemit/api/events/{event_uuid}",
        "/taskemit/api/jobs/{job_id}",
        "/taskemit/api/jobs/{job_id}/abort",
        "/taskemit/api/dead",
        "/taskemit/api/dead/{job_id}",
        "/taskemit/api/dead/{job_id}/replay",
        "/taskemit/api/dead/replay",
        "/taskemit/api/dead/purge",
        "/taskemit/api/listeners",
        "/taskemit/api/listener",
        "/taskemit/api/history",
        "/taskemit/api/workers",
        "/taskemit/api/queues",
        "/taskemit/api/outbox",
        "/taskemit/api/schedules",
        "/taskemit/api/schedules/pause",
        "/taskemit/api/schedules/resume",
        "/taskemit/api/schedules/trigger",
    }  # the HTML pages are not
    events = schema["paths"]["/taskemit/api/events"]["get"]
    assert events["tags"] == ["taskemit"]
    assert events["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("EventPageOut")
    assert {p["name"] for p in events["parameters"]} == {"event_id", "status", "since", "until", "limit", "cursor"}
    replay = schema["paths"]["/taskemit/api/dead/{job_id}/replay"]["post"]
    assert [p["name"] for p in replay["parameters"]] == ["job_id"]
    job = schema["components"]["schemas"]["JobOut"]["properties"]
    assert {"job_id", "listener", "status", "history", "error"} <= set(job)
    history = schema["paths"]["/taskemit/api/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"span", "listener"}
    assert history["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("HistoryOut")
    point = schema["components"]["schemas"]["HistoryPointOut"]["properties"]
    assert {"at", "succeeded_per_s", "failed_per_s", "run_time_p95", "latency_p95", "queued", "waiting", "busy"} <= set(
        point
    )
    assert {"max_tries", "backoff", "retry_on", "timeout"} <= set(
        schema["components"]["schemas"]["PolicyOut"]["properties"]
    )
    schema = make_app(settings, include_in_schema=False).openapi_schema.to_schema()
    assert not [path for path in schema["paths"] if path.startswith("/taskemit")]


async def test_the_apps_own_csrf_config_protects_the_dashboard(settings: Settings) -> None:
    app = make_app(settings, csrf_secret=None, app={"csrf_config": CSRFConfig(secret="the app's own secret value")})
    async with AsyncTestClient(app) as client:
        await client.get("/taskemit/dead", headers=VIEWER)
        assert "taskemit_csrftoken" not in client.cookies
        token = client.cookies["csrftoken"]
        assert (await client.post("/taskemit/api/dead/purge", headers=ADMIN)).status_code == 403
        response = await client.post("/taskemit/api/dead/purge", headers={**ADMIN, "x-csrftoken": token})
        assert response.json() == {"purged": 0}


async def test_overview_and_listener_pages(client: AsyncTestClient[Litestar]) -> None:
    # the landing page is the overview
    landing = await client.get("/taskemit", headers=VIEWER, follow_redirects=False)
    assert landing.status_code in (301, 302, 307, 308) and landing.headers["location"] == "/taskemit/overview"
    for order_id in range(1, 4):
        await until(
            client, f"/taskemit/api/events/{await publish(client, 'order_placed', order_id=order_id)}", event_done
        )
    await publish(client, "report_due", day="monday")  # no worker serves its queue: it waits
    history = await until(
        client,
        "/taskemit/api/history?span=1h",
        lambda h: sum(p["succeeded"] for p in h["points"]) == 3 and any(p["waiting"] for p in h["points"]),
    )
    assert (history["span"], history["step"], len(history["points"])) == ("1h", 60, 60)
    assert sum(p["failed"] for p in history["points"]) == 3
    assert {s["listener"]: s["dead"] for s in history["listeners"]} == {"shop:confirm": 0, "shop:ship": 3}
    (failure,) = history["failures"]
    assert (failure["listener"], failure["error_type"], failure["count"]) == (
        "shop:ship",
        "builtins.ConnectionRefusedError",
        3,
    )
    assert "parked" in history["queues"]
    assert (await client.get("/taskemit/api/history?span=7d", headers=VIEWER)).status_code == 400
    one = (await client.get("/taskemit/api/history?span=24h&listener=shop:report", headers=VIEWER)).json()
    assert one["listener"] == "shop:report" and one["queues"] == ["shop:report"] and len(one["points"]) == 288
    assert sum(p["succeeded"] for p in one["points"]) == 0

    html = (await client.get("/taskemit/overview?span=1h", headers=VIEWER)).text
    assert html.count('<svg class="chart"') == 5 and 'data-html="/taskemit/overview/live?span=1h"' in html
    for title in ("Jobs completed and failed per second", "waiting for a worker", "Run time", "From emit to start"):
        assert title in html
    assert "&lt;b&gt;acme&lt;/b&gt; refused the connection" in html and "<b>acme</b>" not in html  # escaped
    assert '<a href="/taskemit/listener?name=shop%3Aship">shop:ship</a>' in html
    assert "<noscript><h2>Points</h2>" in html  # the points as a table, without JavaScript
    live = await client.get("/taskemit/overview/live?span=30d", headers=VIEWER)
    assert live.headers["content-type"].startswith("text/html") and live.text.count('<svg class="chart"') == 5
    assert "<html" not in live.text  # a fragment for the page's script to swap in

    detail = (await client.get("/taskemit/api/listener?name=shop:ship", headers=VIEWER)).json()
    assert detail["listener"]["died"] == 3 and len(detail["dead_letters"]) == 3
    assert detail["policy"]["max_tries"] == 1 and detail["policy"]["described"] is True
    assert detail["policy"]["retry_on"] == ["builtins.Exception"] and detail["policy"]["declared"] == []
    page = (await client.get("/taskemit/listener?name=shop:ship", headers=VIEWER)).text
    assert "Listener shop:ship" in page and "Retries and limits" in page and page.count('<svg class="chart"') == 5
    assert "builtins.ConnectionRefusedError" in page and "Newest dead letters" in page
    missing = await client.get("/taskemit/api/listener?name=nobody", headers=VIEWER)
    assert missing.status_code == 404 and "no listener 'nobody'" in missing.text
    listeners_page = (await client.get("/taskemit/listeners", headers=VIEWER)).text
    assert 'href="/taskemit/listener?name=shop%3Aconfirm"' in listeners_page


def test_a_listeners_policy_is_its_own_options_over_the_settings(settings: Settings) -> None:
    from taskemit import Backoff
    from taskemit.emit.catalog import describe
    from taskemit.litestar.overview_schemas import policy_out
    from taskemit.monitor.catalog import CatalogEntry

    @listener("x", name="shop:careful", max_tries=3, backoff=Backoff.fixed(2.0), give_up_on=ValueError, timeout=9)
    async def careful() -> None: ...

    entry = describe(careful, "default")
    # what a worker registers travels as JSON through the catalog
    declared = CatalogEntry.from_json(entry.name, entry.to_json()).policy
    policy = policy_out(declared, settings.default_policy, settings.job_timeout, described=True)
    assert (policy.max_tries, policy.delays, policy.timeout) == (3, [2.0, 2.0], 9.0)
    assert policy.backoff == "fixed(2s)" and policy.give_up_on == ["builtins.ValueError"]
    assert policy.retry_on == ["builtins.Exception"]  # the settings' default
    assert policy.declared == ["backoff", "give_up_on", "max_tries", "timeout"]
    plain = policy_out({}, settings.default_policy, settings.job_timeout, described=False)
    assert plain.max_tries == settings.max_tries and plain.timeout == settings.job_timeout and plain.declared == []
