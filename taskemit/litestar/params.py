"""The dashboard's route parameters: path and query parameters as every handler declares them, and
the routes of a job id with '/' in its hash tag (a queue's on a Redis Cluster), which a URL's path
carries as two or three segments (``slashed`` declares them, ``whole_id`` puts the id together)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

__all__ = ("IdPart", "PathId", "Query", "slashed", "whole_id")

#: parameters declared the way every Litestar 2 release reads without a deprecation warning
PathId = Annotated[str, Parameter()]
#: the second and third parts of a job id with '/' in its hash tag (see ``slashed``)
IdPart = Annotated[str | None, Parameter()]


def slashed(path: str, suffix: str = "") -> list[str]:
    """``path`` (ending in ``{job_id:str}``) and ``suffix``, and the same for a job id whose hash tag
    has one or two '/' (a queue's on a Redis Cluster: ``{ns/queue}:...``, ``{ns/queue/k}:...``): a
    URL's path carries them as two or three segments, even when quoted (``%2F``), so those routes
    take them (``job_id_2``, ``job_id_3``) and ``whole_id`` puts the id together again."""
    return [
        path + suffix,
        path + "/{job_id_2:str}" + suffix,
        path + "/{job_id_2:str}/{job_id_3:str}" + suffix,
    ]


def whole_id(job_id: str, job_id_2: str | None = None, job_id_3: str | None = None) -> str:
    """The job id ``slashed``'s routes took in parts."""
    return "/".join(part for part in (job_id, job_id_2, job_id_3) if part is not None)


Query = Annotated[str | None, Parameter()]
