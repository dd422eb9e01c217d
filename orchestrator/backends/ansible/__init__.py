"""The Ansible backend: ansible-runner jobs over the playbooks in `playbooks/`."""
