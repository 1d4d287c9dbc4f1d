"""Live-mode harness pieces: faults injected into real connections (a TCP fault proxy)."""
