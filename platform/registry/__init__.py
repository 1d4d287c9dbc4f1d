"""Cross-bank pledge registry (中登网 model) with a registration lag and goods fingerprints."""
