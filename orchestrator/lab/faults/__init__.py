"""Fault injection on the lab, as trials: `inject` (faults into hosts and sessions), `bench`
(what trials share), `trials`, `exposure` and `outages` (the scenarios), `table` (their classes
and how often each runs). `bench/faults.py` counts them; `tests/run/test_faults_lab.py` runs the
quick subset. The one part of the package besides the entry point that drives
`orchestrator.cli` (as a user would)."""
