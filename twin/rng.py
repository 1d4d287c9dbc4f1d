"""Named, seeded random streams: one per component, stable across processes.

A stream's seed comes from the scenario seed and a SHA-256 of its name (never Python's
`hash`, which PYTHONHASHSEED changes), so adding a component never shifts another's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np


class RandomStreams:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        stream = self._streams.get(name)
        if stream is None:
            digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
            stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, digest])))
            self._streams[name] = stream
        return stream
