"""runc-rollout: fleet-wide runc upgrade orchestrator."""

__version__ = "0.1.0"
