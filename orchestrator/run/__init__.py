"""Carrying out a plan: the wave engine, the journal, rollback."""
