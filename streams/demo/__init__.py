"""Sample traffic for the demo: a deterministic morning of accesses at a few practices."""
