"""The edge supervision system: one per warehouse, autonomous while offline."""
