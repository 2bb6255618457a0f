"""The reliability suite (issue 8): what users notice when things around the service fail.

- ``test_telemetry_outages``: Sentry, the collector, an exporter or the error budget's
  store failing or hanging costs no request anything, and shutdown stays bounded.
- ``test_dependency_outages``: Bolna down or slow, the database (PostgreSQL) down or
  unresponsive: fast, clear 5xx answers, nothing half-done, recovery without a restart.
- ``test_webhook_delivery``: repeated, shuffled and concurrent deliveries, and a crash
  between storing and processing: one final state, one charge, nothing lost.
- ``test_credit_concurrency``: a hundred deductions at once on one balance.

``netfaults`` has the loopback relay the outages cut; ``deliveries`` the webhook bodies.
"""
