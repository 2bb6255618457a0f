"""Campaigns: bulk calling from a database-backed queue, within daily windows, with retries.

`wiring.install(app)` mounts the API; `wiring.add_workers(...)` adds the scheduler and the
queue processor loops. See `processor` for how items are claimed, dialed and settled.
"""
