"""Bugsink, a real Sentry-protocol server, for end-to-end tests of error reporting.

The session fixture ``bugsink`` (``tests/e2e/conftest.py``) gives a :class:`BugsinkClient`:
``.dsn`` is what the app's ``SENTRY_DSN`` should be; the REST API
(``/api/canonical/0/``, bearer token) reads back what arrived.

    client.clear()                                   # forget earlier tests' events
    ...                                              # make the app report errors
    events = client.wait_for_events(2)               # full events, "data" = the Sentry JSON
    assert events[0]["data"]["tags"]["app.feature"] == "calls"

The server comes from ``BUGSINK_URL``/``BUGSINK_DSN``/``BUGSINK_TOKEN`` when set (``.ci/run``
starts it), otherwise :func:`start_bugsink` runs ``scripts/bugsink_start.sh``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO_ROOT / "scripts" / "bugsink_start.sh"
STOP_SCRIPT = REPO_ROOT / "scripts" / "bugsink_stop.sh"
ENV_VARS = ("BUGSINK_URL", "BUGSINK_DSN", "BUGSINK_TOKEN")
# A cold start installs Bugsink into its own virtualenv first (about 15 s here).
START_TIMEOUT_SECONDS = 300.0
MAX_PAGES = 50

Event = dict[str, Any]


class BugsinkUnavailable(Exception):
    """Bugsink could not be reached or started; the message says why."""


@dataclass(frozen=True)
class BugsinkServer:
    url: str
    dsn: str
    token: str

    @property
    def project_id(self) -> int:
        return project_id_from_dsn(self.dsn)


def project_id_from_dsn(dsn: str) -> int:
    return int(urlsplit(dsn).path.rstrip("/").rsplit("/", 1)[-1])


def server_from_env() -> BugsinkServer | None:
    values = [os.environ.get(name, "").strip() for name in ENV_VARS]
    if not any(values):
        return None
    if not all(values):
        missing = [name for name, value in zip(ENV_VARS, values, strict=True) if not value]
        raise BugsinkUnavailable(f"{', '.join(missing)} not set (all of {ENV_VARS} are needed)")
    url, dsn, token = values
    return BugsinkServer(url=url.rstrip("/"), dsn=dsn, token=token)


def parse_exports(output: str) -> dict[str, str]:
    """``export NAME=value`` lines (shell-quoted) as a dict."""
    exports = {}
    for line in output.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            exports[name] = value
    return exports


def start_bugsink() -> tuple[BugsinkServer, bool]:
    """Run ``scripts/bugsink_start.sh``: the server, and whether it was started (not reused)."""
    try:
        result = subprocess.run(
            ["bash", str(START_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BugsinkUnavailable(f"{START_SCRIPT.name} did not finish: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise BugsinkUnavailable(f"{START_SCRIPT.name} exited {result.returncode}:\n{tail}")
    exports = parse_exports(result.stdout)
    try:
        server = BugsinkServer(
            url=exports["BUGSINK_URL"], dsn=exports["BUGSINK_DSN"], token=exports["BUGSINK_TOKEN"]
        )
    except KeyError as exc:
        raise BugsinkUnavailable(f"{START_SCRIPT.name} printed no {exc}") from exc
    return server, "already running" not in result.stderr


def stop_bugsink() -> None:
    subprocess.run(["bash", str(STOP_SCRIPT)], check=False, timeout=30, capture_output=True)


class BugsinkClient:
    """Reads (and clears) what a Bugsink project received, through its REST API."""

    def __init__(self, server: BugsinkServer, *, timeout: float = 10.0) -> None:
        self.server = server
        self._http = httpx.Client(
            base_url=f"{server.url}/api/canonical/0/",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=timeout,
        )

    @property
    def dsn(self) -> str:
        return self.server.dsn

    @property
    def project_id(self) -> int:
        return self.server.project_id

    def close(self) -> None:
        self._http.close()

    def check(self) -> None:
        """Raise :class:`BugsinkUnavailable` unless the server answers with this token."""
        try:
            response = self._http.get(f"projects/{self.project_id}/")
        except httpx.HTTPError as exc:
            raise BugsinkUnavailable(f"{self.server.url} does not answer: {exc}") from exc
        if response.status_code != 200:
            raise BugsinkUnavailable(
                f"{self.server.url} answered {response.status_code}: {response.text[:200]}"
            )

    def _pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        next_url: str | None = path
        for _ in range(MAX_PAGES):
            if next_url is None:
                return results
            response = self._http.get(next_url, params=params if next_url == path else None)
            response.raise_for_status()
            page = response.json()
            results.extend(page["results"])
            next_url = page.get("next")
        raise AssertionError(f"Bugsink: more than {MAX_PAGES} pages at {path}")

    def issues(self, project: int | None = None) -> list[dict[str, Any]]:
        return self._pages("issues/", {"project": project or self.project_id})

    def events(self, project: int | None = None) -> list[Event]:
        """Every stored event of the project, oldest first, each with its full ``data``."""
        summaries = [
            summary
            for issue in self.issues(project)
            for summary in self._pages("events/", {"issue": issue["id"], "order": "asc"})
        ]
        summaries.sort(key=lambda e: (e["ingested_at"], e["digest_order"]))
        return [self._get(f"events/{summary['id']}/") for summary in summaries]

    def event(self, event_id: str, project: int | None = None) -> Event | None:
        """The event with this SDK ``event_id`` (hex, dashes optional), or None."""
        response = self._http.get(
            "events/lookup/", params={"project": project or self.project_id, "event_id": event_id}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: Event = response.json()
        return result

    def _get(self, path: str) -> Event:
        response = self._http.get(path)
        response.raise_for_status()
        result: Event = response.json()
        return result

    def wait_for_events(
        self,
        count: int,
        timeout: float = 15.0,
        *,
        where: Callable[[Event], bool] | None = None,
        project: int | None = None,
        settle: float = 0.0,
        interval: float = 0.25,
    ) -> list[Event]:
        """Poll until at least *count* events (matching *where*) are stored; return them all.

        With *settle*, wait that many seconds more and read again, so that an assertion
        of "exactly once" also sees late duplicates. Raises ``AssertionError`` after
        *timeout* seconds, naming what did arrive.
        """
        deadline = time.monotonic() + timeout
        while True:
            events = [e for e in self.events(project) if where is None or where(e)]
            if len(events) >= count:
                if settle > 0:
                    time.sleep(settle)
                    events = [e for e in self.events(project) if where is None or where(e)]
                return events
            if time.monotonic() >= deadline:
                titles = [e["data"].get("message") or _exception_title(e) for e in events]
                raise AssertionError(
                    f"Bugsink: {len(events)} of {count} events after {timeout:.1f}s: {titles}"
                )
            time.sleep(interval)

    def clear(self, project: int | None = None) -> None:
        """Delete every issue (and so every event) of the project."""
        for issue in self.issues(project):
            self._http.delete(f"issues/{issue['id']}/").raise_for_status()


def _exception_title(event: Event) -> str:
    values = event["data"].get("exception", {}).get("values") or [{}]
    last = values[-1]
    return f"{last.get('type', '?')}: {last.get('value', '')}"
