"""Helper process for the SIGKILL test: appends to a file outbox forever, announcing each commit.

Usage: python outbox_writer_proc.py PATH SEED [group]. After `append_many` returns, the committed
range is printed as "FIRST LAST" and flushed, so every printed seq was durable before it was announced.
With `group`, the outbox runs in group-commit mode as the live edge does: a committer thread fsyncs
(`make_durable`) while the main thread keeps appending, and announces what each fsync covered.
"""

from __future__ import annotations

import random
import sys
import threading

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.edge.outbox import Outbox, OutboxConfig

CONFIG = OutboxConfig(max_bytes=1 << 34, segment_bytes=1 << 20, priorities=3)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def main(path: str, seed: int, group: bool) -> None:
    rng = random.Random(seed)
    box = Outbox(path, CONFIG, KEY, group_commit=group)
    print("open", flush=True)
    committed = [0]  # the head after the newest append_many, read by the committer
    wake = threading.Condition()

    def committer() -> None:
        durable = box.head[0]
        while True:
            with wake:
                wake.wait_for(lambda: committed[0] > durable)
                head = committed[0]
            box.make_durable()
            print(durable + 1, head, flush=True)
            durable = head

    if group:
        threading.Thread(target=committer, daemon=True).start()
    t = 0.0
    while True:
        size = rng.choice([1, 7, 100, 1000, 4000])
        items = [(rng.randbytes(rng.randint(0, 200)), rng.randrange(3)) for _ in range(size)]
        t += 1.0
        seqs = box.append_many(items, now=t)
        if group:
            with wake:
                committed[0] = seqs[-1]
                wake.notify()
        else:
            print(seqs[0], seqs[-1], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["group"])
