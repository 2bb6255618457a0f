"""The API, except that it dies the moment a webhook delivery is stored.

    python -m tests.reliability.crash_after_store serve --port 8123

``POST /webhooks/bolna`` commits the delivery, then the process exits at once
(``os._exit``: no answer, no cleanup, as a kill -9 or the OOM killer would), before the
delivery is processed. Deliveries are stored due for the retry worker right away instead
of after 30 s when the test sets ``WEBHOOK_RECEIVED_GRACE_SECONDS=0``, so that the
restarted API picks them up without the test waiting.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import app.webhooks.router as webhooks_router
from app.__main__ import main

CRASH_EXIT_CODE = 75


async def _die_before_processing(*args: Any, **kwargs: Any) -> NoReturn:
    os._exit(CRASH_EXIT_CODE)


if __name__ == "__main__":
    webhooks_router.process = _die_before_processing
    raise SystemExit(main())
