"""The embedded world: a procedural image world, the minisd model trained on it, its judge."""
