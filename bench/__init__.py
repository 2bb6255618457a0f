"""Benchmarks: telemetry overhead, error-policy cost, webhook and campaign throughput.

    make bench          # full run, a few minutes; rewrites BENCHMARKS.md
    make bench-quick    # under a minute, same cases with fewer samples

Each configuration under comparison runs in its own worker process (``bench.worker``):
process-global state (OpenTelemetry's provider, sentry-sdk's client, SQLAlchemy event
hooks) never leaks from one configuration into another. The parent drives them in
rounds (A/B interleaved, the order rotated each round), so machine noise falls on every
configuration alike, and ratios compare figures measured in the same run.

Figures are benchmarks, not tests: nothing here fails on a slow machine; the report says
which goal was met or missed and by how much.
"""
