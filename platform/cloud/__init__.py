"""The cloud aggregation service: registry, collateral book, trust rules and alerts."""
