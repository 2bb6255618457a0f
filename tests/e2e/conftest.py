"""Fixtures for end-to-end tests: an OTLP receiver per test, Bugsink per session.

A component that cannot start skips its tests locally (with the reason) and fails
them under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.bugsink import (
    BugsinkClient,
    BugsinkUnavailable,
    server_from_env,
    start_bugsink,
    stop_bugsink,
)
from tests.e2e.otlp_receiver import OtlpReceiver
from tests.pg import unavailable


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on a free loopback port; ``.endpoint`` is its base URL."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def bugsink() -> Iterator[BugsinkClient]:
    """Bugsink for the whole session: ``.dsn`` for the app, ``.events()`` to read back.

    Taken from ``BUGSINK_*`` when set, else started here (and stopped at the end).
    Events from earlier tests stay: use ``fresh_bugsink`` or call ``.clear()``.
    """
    started_here = False
    client: BugsinkClient | None = None
    try:
        server = server_from_env()
        if server is None:
            server, started_here = start_bugsink()
        client = BugsinkClient(server)
        client.check()
    except BugsinkUnavailable as exc:
        if client is not None:
            client.close()
        if started_here:
            stop_bugsink()
        unavailable("Bugsink", str(exc))
    try:
        yield client
    finally:
        client.close()
        if started_here:
            stop_bugsink()


@pytest.fixture
def fresh_bugsink(bugsink: BugsinkClient) -> BugsinkClient:
    """The session's Bugsink with its project emptied first."""
    bugsink.clear()
    return bugsink
