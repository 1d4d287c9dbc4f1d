"""Value trust: price feeds as the platform receives them, and mark-to-market of pledged collateral."""
