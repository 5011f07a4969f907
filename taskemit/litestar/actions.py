"""The form posts of the dashboard pages' buttons (POST, ``guards``, CSRF-checked): replay, purge
and abort through ``DashboardData``, then back to a page (303) with a notice of what was done."""

from __future__ import annotations

from urllib.parse import quote

from litestar import post
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from .html import query
from .pages import DashboardController, html_error
from .params import IdPart, PathId, Query, slashed, whole_id

__all__ = ("PageActions",)


def _see_other(url: str) -> Redirect:
    """Back to a page after a form post (303: the browser GETs it)."""
    return Redirect(url, status_code=303)


class PageActions(DashboardController):
    """The pages' buttons: form posts that redirect back (303); the plugin adds the ``guards``."""

    include_in_schema = False
    exception_handlers = {HTTPException: html_error}  # noqa: RUF012 - Litestar reads it off the class

    @post(slashed("/dead/{job_id:str}", "/replay"), status_code=303)
    async def replay(self, job_id: PathId, job_id_2: IdPart = None, job_id_3: IdPart = None) -> Redirect:
        d = self.dashboard
        done = await d.data.replay(whole_id(job_id, job_id_2, job_id_3))
        notice = f"Replayed {done.job_id} as {done.new_job_id}"
        if done.event_uuid:
            return _see_other(query(f"{d.base}/events/{quote(done.event_uuid, safe='')}", notice=notice))
        return _see_other(query(f"{d.base}/dead", notice=notice))

    @post("/dead/replay", status_code=303)
    async def replay_all(self, listener: Query = None, event: Query = None) -> Redirect:
        d = self.dashboard
        done = await d.data.replay_all(listener=listener, event=event)
        notice = f"Replayed {len(done.replayed)} dead letters" + (
            f", skipped {len(done.skipped)}" if done.skipped else ""
        )
        return _see_other(query(f"{d.base}/dead", listener=listener, event=event, notice=notice))

    @post("/dead/purge", status_code=303)
    async def purge(self, listener: Query = None, event: Query = None) -> Redirect:
        d = self.dashboard
        done = await d.data.purge(listener=listener, event=event)
        return _see_other(
            query(f"{d.base}/dead", listener=listener, event=event, notice=f"Purged {done.purged} dead letters")
        )

    @post(slashed("/events/{event_uuid:str}/jobs/{job_id:str}", "/abort"), status_code=303)
    async def abort(
        self, event_uuid: PathId, job_id: PathId, job_id_2: IdPart = None, job_id_3: IdPart = None
    ) -> Redirect:
        d = self.dashboard
        job_id = whole_id(job_id, job_id_2, job_id_3)
        done = await d.data.abort(job_id)
        notice = {
            "aborted": f"Aborted {job_id}",
            "requested": f"{job_id} is running: its worker cancels it at its next lease renewal",
        }.get(done.outcome, f"{job_id} was neither waiting nor running")
        return _see_other(query(f"{d.base}/events/{quote(event_uuid, safe='')}", notice=notice))
