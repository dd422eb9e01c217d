"""Reading Ansible inventories and `--limit` patterns."""
