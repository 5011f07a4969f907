"""arq where it is installed: tests of the stock arq worker and of arq's Job API skip without it.

arq is taskemit's ``arq`` extra (``pip install 'taskemit[arq]'``, part of the ``test`` extra); it
pins redis-py below 6, so a run on a newer redis-py (CI's second leg) has no arq.
"""

from __future__ import annotations

import importlib.util

import pytest

__all__ = ("HAVE_ARQ", "NO_ARQ", "needs_arq")

HAVE_ARQ = importlib.util.find_spec("arq") is not None
#: why a test that needs arq skips
NO_ARQ = (
    "arq is not installed (pip install 'taskemit[arq]', which keeps redis-py below 6): "
    "this test runs a stock arq worker or reads jobs with arq's own code"
)
needs_arq = pytest.mark.skipif(not HAVE_ARQ, reason=NO_ARQ)
