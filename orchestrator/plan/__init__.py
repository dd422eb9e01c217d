"""Planning, pure: waves, the change plan, its rendering and its approval."""
