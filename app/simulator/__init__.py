"""Bolna simulator: a standalone fake of Bolna's HTTP API and webhooks.

See :mod:`app.simulator.server` for the endpoints and the fault body format.
"""

from app.simulator._faults import CallFault, FaultConfig, FaultsUpdate, WebhookFaults
from app.simulator.server import (
    CallRecord,
    RequestRecord,
    SimulatorState,
    create_simulator_app,
    simulator_state,
)

__all__ = [
    "CallFault",
    "CallRecord",
    "FaultConfig",
    "FaultsUpdate",
    "RequestRecord",
    "SimulatorState",
    "WebhookFaults",
    "create_simulator_app",
    "simulator_state",
]
