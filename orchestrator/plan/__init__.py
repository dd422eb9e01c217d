"""Planning: waves, placement and maintenance windows (pure), the change plan, its views and
its approval (ssh-keygen signatures), the artifact and its provenance (sha256, gpgv)."""
