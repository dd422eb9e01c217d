"""The SSH backend: connections through fabric, ssh_config, and its wave runner."""
