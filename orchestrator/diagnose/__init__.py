"""Fleet diagnostics for the incident: audit, unstick, the advisory table."""
