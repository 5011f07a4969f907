"""The dashboard's cron schedules: registered by the scheduler of the worker in the app, listed
with their next fire times, paused, resumed and triggered from the page and the JSON API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from test_dashboard import ADMIN, VIEWER, admins, csrf_token, until, viewers

from taskemit import Settings, cron, listener
from taskemit.litestar import TaskEmitConfig, TaskEmitPlugin

reports: list[Any] = []


@listener("report_due", name="reports:build")
async def build_report(kind: str, **kwargs: Any) -> None:
    reports.append(kind)


NIGHTLY = cron("0 3 * * *", "report_due", kind="nightly", name="nightly report")
FREQUENT = cron("*/5 * * * *", "report_due", kind="frequent", name="every/5 minutes")


def make_app(settings: Settings, *, worker: bool = True) -> Litestar:
    config = TaskEmitConfig(
        listeners=[build_report],
        crons=[NIGHTLY, FREQUENT],
        settings=settings,
        run_workers_in_app=worker,
        dashboard_path="/taskemit",
        guards=[admins],
        read_guards=[viewers],
        csrf_secret="a test secret of thirty-two chars",
    )
    return Litestar([], plugins=[TaskEmitPlugin(config)])


def by_name(schedules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {schedule["name"]: schedule for schedule in schedules}


async def test_schedules_listed_paused_resumed_and_triggered(taskemit_settings: Settings) -> None:
    reports.clear()
    settings = taskemit_settings.model_copy(update={"drain_on_exit": False, "idle_poll": 0.2})
    async with AsyncTestClient(make_app(settings)) as client:
        listed = await until(client, "/taskemit/api/schedules", lambda found: len(found) == 2)
        nightly = by_name(listed)["nightly report"]
        assert (nightly["event"], nightly["expression"], nightly["tz"]) == ("report_due", "0 3 * * *", "UTC")
        assert (nightly["state"], nightly["schedulers"]) == ("active", 1)
        next_fire = dt.datetime.fromtimestamp(nightly["next_fire"], dt.UTC)
        assert (next_fire.hour, next_fire.minute, next_fire.second) == (3, 0, 0) and next_fire > dt.datetime.now(dt.UTC)

        html = (await client.get("/taskemit/schedules", headers=VIEWER)).text
        assert "every/5 minutes" in html and html.count(">pause</button>") == 2 and ">resume</button>" not in html
        assert 'action="/taskemit/schedules/pause?name=every%2F5%20minutes"' in html

        # pause from the page (a name with a slash and spaces), resume through the API
        token = await csrf_token(client)
        response = await client.post(
            "/taskemit/schedules/pause",
            params={"name": "every/5 minutes"},
            data={"_csrf_token": token},
            headers=ADMIN,
            follow_redirects=False,
        )
        assert response.status_code == 303 and "notice=Paused+every%2F5+minutes" in response.headers["location"]
        frequent = by_name((await client.get("/taskemit/api/schedules", headers=VIEWER)).json())["every/5 minutes"]
        assert frequent["state"] == "paused" and frequent["paused_at"] is not None
        html = (await client.get("/taskemit/schedules", headers=VIEWER)).text
        assert html.count(">pause</button>") == 1 and html.count(">resume</button>") == 1
        headers = {**ADMIN, "x-csrftoken": token}
        resumed = await client.post(
            "/taskemit/api/schedules/resume", params={"name": "every/5 minutes"}, headers=headers
        )
        assert resumed.status_code == 200 and resumed.json()["state"] == "active"

        # a trigger fires it once, now, through the app's scheduler
        triggered = await client.post(
            "/taskemit/api/schedules/trigger", params={"name": "nightly report"}, headers=headers
        )
        assert triggered.status_code == 200
        event_uuid = triggered.json()["event_uuid"]
        event = await until(
            client, f"/taskemit/api/events/{event_uuid}", lambda e: isinstance(e.get("done"), bool) and e["done"]
        )
        assert event["event_id"] == "report_due" and event["status"] == "complete"
        assert reports == ["nightly"]

        # refused: no role, a viewer, no CSRF token, an unknown schedule
        for name, role in (("nightly report", {}), ("nightly report", VIEWER)):
            response = await client.post(
                "/taskemit/api/schedules/pause", params={"name": name}, headers={**role, "x-csrftoken": token}
            )
            assert response.status_code == 403
        response = await client.post("/taskemit/api/schedules/pause", params={"name": "nightly report"}, headers=ADMIN)
        assert response.status_code == 403
        for verb in ("pause", "resume", "trigger"):
            response = await client.post(f"/taskemit/api/schedules/{verb}", params={"name": "nope"}, headers=headers)
            assert response.status_code == 404, verb

    # no scheduler runs now: the schedules stay listed with none, and a trigger is refused
    async with AsyncTestClient(make_app(settings, worker=False)) as client:
        listed = by_name((await client.get("/taskemit/api/schedules", headers=VIEWER)).json())
        assert listed["nightly report"]["schedulers"] == 0
        token = await csrf_token(client)
        response = await client.post(
            "/taskemit/api/schedules/trigger",
            params={"name": "nightly report"},
            headers={**ADMIN, "x-csrftoken": token},
        )
        assert response.status_code == 409 and "no live scheduler" in response.text
        response = await client.post(
            "/taskemit/schedules/trigger",
            params={"name": "nightly report"},
            data={"_csrf_token": token},
            headers=ADMIN,
            follow_redirects=False,
        )
        assert response.status_code == 303 and "no+live+scheduler" in response.headers["location"]
