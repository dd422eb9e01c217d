"""What happens on one host: its commands, facts, the upgrade procedure, the incident probe."""
