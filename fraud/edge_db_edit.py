"""edge-db-edit: the edge is stopped, a row of its outbox database is altered, and it is restarted.

Acts on bytes at rest, as only a data edit may: someone with the edge box's console stops the
service (as a crash would), opens the SQLite outbox and changes one byte of a record still
waiting to be sent (say, to hide an alert during an uplink outage), then starts the service
again. The outbox re-walks its hash chain on open; the altered row breaks it, the row is
dropped as corrupt, and evidence-tamper raises an alert on the edge. Minimum magnitude: one
byte of one unsent row; detection comes at the restart (the edge cannot audit while stopped).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np

from cangtwin.fraud.label import Label


def edit_row(path: Path, rng: np.random.Generator) -> int | None:
    """Flip one bit of a random unsent row's payload; returns its seq (None if nothing is unsent)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, payload FROM entries WHERE payload IS NOT NULL ORDER BY seq").fetchall()
        if not rows:
            return None
        seq, payload = rows[int(rng.integers(len(rows)))]
        edited = bytearray(payload)
        edited[len(edited) // 2] ^= 0x01
        with db:
            db.execute("UPDATE entries SET payload = ? WHERE seq = ?", (bytes(edited), seq))
        return seq
    finally:
        db.close()


def inject_edge_db_edit(
    label_id: str, site: str, at: float, down_s: float, path: Path, rng: np.random.Generator,
    stop: Callable[[], None], start: Callable[[], None],
    schedule: Callable[[float, Callable[[], None]], None], record: Callable[[Label], None],
) -> Label:
    label = Label(
        id=label_id, kind="edge-db-edit", fault=False, targets=[f"edge:{site}"], injected_at=at, onset=at,
        magnitude=1, magnitude_unit="bytes", primary_rules=["evidence-tamper"],
        # The service is down while it is edited: the cloud and the restarted edge notice that too.
        secondary_rules=["edge-offline", "device-offline"], window_s=down_s + 600.0,
        detail={"restart_at": at + down_s, "minimum_magnitude": 1},
    )

    def act() -> None:
        stop()
        label.detail["seq"] = edit_row(path, rng)
        record(label)

    schedule(at, act)
    schedule(at + down_s, start)
    return label
