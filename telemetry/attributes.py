"""Span, metric and error-event attribute names, declared once.

OpenTelemetry semantic-convention names where one exists; otherwise the ``app.``
namespace. Values attached under these names pass through the scrubber before
export, but callers should still never attach raw phone numbers or secrets.

    span.set_attribute(attributes.CALL_ID, call.id)
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry semantic conventions -------------------------------------
ERROR_TYPE: Final = "error.type"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
ENDUSER_ID: Final = "enduser.id"
SERVICE_NAME: Final = "service.name"
SERVICE_VERSION: Final = "service.version"
SERVICE_INSTANCE_ID: Final = "service.instance.id"
DEPLOYMENT_ENVIRONMENT: Final = "deployment.environment.name"
SERVER_ADDRESS: Final = "server.address"

# --- our own -----------------------------------------------------------------
FEATURE: Final = "app.feature"
CALL_ID: Final = "app.call.id"
CALL_SOURCE: Final = "app.call.source"  # direct | campaign
CALL_STATUS: Final = "app.call.status"
CALL_PHONE: Final = "app.call.phone"  # masked by the scrubber; prefer not to set
AGENT_ID: Final = "app.agent.id"
CONTACT_ID: Final = "app.contact.id"
CAMPAIGN_ID: Final = "app.campaign.id"
CAMPAIGN_STATUS: Final = "app.campaign.status"
QUEUE_ITEM_ID: Final = "app.campaign.item.id"
QUEUE_ITEM_ATTEMPT: Final = "app.campaign.item.attempt"
QUEUE_CLAIMED: Final = "app.campaign.claimed"
BOLNA_EXECUTION_ID: Final = "app.bolna.execution_id"
BOLNA_ENDPOINT: Final = "app.bolna.endpoint"
BOLNA_ATTEMPT: Final = "app.bolna.attempt"
WEBHOOK_ID: Final = "app.webhook.delivery_id"
WEBHOOK_STATUS: Final = "app.webhook.status"
WEBHOOK_OUTCOME: Final = "app.webhook.outcome"
WEBHOOK_ATTEMPT: Final = "app.webhook.attempt"
CREDITS_AMOUNT: Final = "app.credits.amount"
CREDITS_BALANCE: Final = "app.credits.balance"
CREDITS_IDEMPOTENCY_KEY: Final = "app.credits.idempotency_key"
AUTH_RESULT: Final = "app.auth.result"
TRANSCRIPT_LENGTH: Final = "app.transcript.length"

# --- error-policy decisions --------------------------------------------------
DECISION_OUTCOME: Final = "app.telemetry.decision.outcome"  # sent | dropped | logged
DECISION_REASON: Final = "app.telemetry.decision.reason"
ERROR_LEVEL: Final = "app.telemetry.level"
ERROR_FINGERPRINT: Final = "app.telemetry.fingerprint"
ERROR_REPEAT_COUNT: Final = "app.telemetry.repeat_count"  # duplicates collapsed before this one
HTTP_STATUS_CLASS: Final = "app.http.status_class"  # "5xx", "4xx", ...

# --- instrumentation (HTTP server and database client spans) ----------------
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
URL_PATH: Final = "url.path"
URL_SCHEME: Final = "url.scheme"
URL_FULL: Final = "url.full"  # client spans: scheme, host and path; never the query string
SERVER_PORT: Final = "server.port"
DB_SYSTEM: Final = "db.system"
DB_NAME: Final = "db.name"
DB_STATEMENT: Final = "db.statement"  # parameterised SQL: placeholders, no literal values
DB_OPERATION: Final = "db.operation"
DB_DURATION_MS: Final = "app.db.duration_ms"  # on db.query events (TELEMETRY_SQL_SPANS=events)
