"""Test utilities shipped with semcascade (fault injection on loopback)."""

from semcascade.testing.fault_server import FAULT_KINDS, TRANSIENT_FAULTS, FaultServer, FaultStats, http_date

__all__ = ["FAULT_KINDS", "TRANSIENT_FAULTS", "FaultServer", "FaultStats", "http_date"]
