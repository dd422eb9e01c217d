"""Small helpers with no domain knowledge: bounded reads, safe text, memory use."""
