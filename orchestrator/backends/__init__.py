"""Ways to reach hosts: the SSH backend (fabric, paramiko) and the Ansible backend."""
