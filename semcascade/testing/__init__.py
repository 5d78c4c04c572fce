"""Test utilities shipped with semcascade (fault injection on loopback)."""

from semcascade.testing.fault_server import FAULT_KINDS, FaultServer, FaultStats

__all__ = ["FAULT_KINDS", "FaultServer", "FaultStats"]
