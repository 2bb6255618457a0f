"""PostgreSQL for the test suite, and what to do when a real component is missing.

``.ci/run`` (or ``eval "$(scripts/pg_start.sh)"`` locally) starts a throwaway server
and exports ``TEST_POSTGRES_URL``. Tests that need it carry ``@pytest.mark.postgres``;
without a reachable server they skip locally with the reason, and fail under ``CI=true``
so a broken CI machine cannot pass by skipping.

    # tests/conftest.py
    from tests.pg import check_postgres_marker, postgres_param

    def pytest_runtest_setup(item):
        check_postgres_marker(item)

    @pytest.fixture(params=[pytest.param(SQLITE_URL, id="sqlite"), postgres_param()])
    def database_url(request): ...
"""

from __future__ import annotations

import functools
import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

POSTGRES_URL_VARS = ("TEST_POSTGRES_URL", "DATABASE_URL_PG")
START_HINT = 'start one with: eval "$(scripts/pg_start.sh)"'


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where missing components are failures."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(component: str, reason: str) -> NoReturn:
    """Skip the current test with *reason*, or fail it under CI."""
    message = f"{component} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a component that cannot start fails the run)")
    pytest.skip(message)


def postgres_url() -> str | None:
    """The PostgreSQL URL (async driver) the tests may use, or None when none is configured."""
    for name in POSTGRES_URL_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@functools.cache
def _unreachable_reason(url: str) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc}); {START_HINT}"


def require_postgres() -> str:
    """The PostgreSQL URL, after checking the server answers; else skip (locally) or fail (CI)."""
    url = postgres_url()
    if url is None:
        unavailable("PostgreSQL", f"TEST_POSTGRES_URL is not set; {START_HINT}")
    reason = _unreachable_reason(url)
    if reason is not None:
        unavailable("PostgreSQL", reason)
    return url


def check_postgres_marker(item: pytest.Item) -> None:
    """For ``pytest_runtest_setup``: apply :func:`require_postgres` to ``postgres``-marked tests."""
    if item.get_closest_marker("postgres") is not None:
        require_postgres()


def postgres_param(id: str = "postgres") -> pytest.ParameterSet:
    """A ``pytest.param`` carrying the PostgreSQL URL (maybe None) and the ``postgres`` mark.

    The mark makes :func:`check_postgres_marker` skip or fail the test before the
    fixture ever sees a None URL.
    """
    return pytest.param(postgres_url(), marks=pytest.mark.postgres, id=id)
